package store

import "fmt"

// Async starts open in the background and returns at once a Store whose
// methods wait for it (failing with its error), and ready, which waits and
// returns that error. A command can so log in to its servers while the
// store opens: Badger needs about 10 ms for that.
func Async(open func() (Store, error)) (st Store, ready func() error) {
	a := &asyncStore{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		defer func() {
			if v := recover(); v != nil {
				a.err = fmt.Errorf("open store: internal error: %v", v)
			}
		}()
		a.st, a.err = open()
	}()
	return a, a.ready
}

type asyncStore struct {
	done chan struct{}
	st   Store
	err  error
}

func (a *asyncStore) ready() error {
	<-a.done
	return a.err
}

func (a *asyncStore) Mailbox(email string) (Mailbox, error) {
	if err := a.ready(); err != nil {
		return Mailbox{}, err
	}
	return a.st.Mailbox(email)
}

func (a *asyncStore) Mailboxes() ([]Mailbox, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	return a.st.Mailboxes()
}

func (a *asyncStore) Folder(mailbox, folder string) (Folder, error) {
	if err := a.ready(); err != nil {
		return Folder{}, err
	}
	return a.st.Folder(mailbox, folder)
}

func (a *asyncStore) Folders(mailbox string) ([]Folder, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	return a.st.Folders(mailbox)
}

func (a *asyncStore) Messages(mailbox, folder string, uidValidity uint32, fn func(Message) error) error {
	if err := a.ready(); err != nil {
		return err
	}
	return a.st.Messages(mailbox, folder, uidValidity, fn)
}

func (a *asyncStore) Message(mailbox, folder string, uidValidity, uid uint32) (Message, error) {
	if err := a.ready(); err != nil {
		return Message{}, err
	}
	return a.st.Message(mailbox, folder, uidValidity, uid)
}

func (a *asyncStore) Update(fn func(Tx) error) error {
	if err := a.ready(); err != nil {
		return err
	}
	return a.st.Update(fn)
}

func (a *asyncStore) DeleteFolder(mailbox, folder string) error {
	if err := a.ready(); err != nil {
		return err
	}
	return a.st.DeleteFolder(mailbox, folder)
}

func (a *asyncStore) Verifier(email string) (string, error) {
	if err := a.ready(); err != nil {
		return "", err
	}
	return a.st.Verifier(email)
}

func (a *asyncStore) SetVerifier(email, verifier string) error {
	if err := a.ready(); err != nil {
		return err
	}
	return a.st.SetVerifier(email, verifier)
}

// Close closes the store once it is open; a store that failed to open has
// nothing to close.
func (a *asyncStore) Close() error {
	if a.ready() != nil {
		return nil
	}
	return a.st.Close()
}
