package store

import "fmt"

// Async starts open in the background and returns at once a Store whose
// calls wait for it (failing with its error), and ready, which waits and
// returns that error. A command can so log in to its servers while the
// store opens: Badger needs about 10 ms for that. open must return a Store
// of this package.
func Async(open func() (Store, error)) (st Store, ready func() error) {
	a := &asyncKV{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		defer func() {
			if v := recover(); v != nil {
				a.err = fmt.Errorf("open store: internal error: %v", v)
			}
		}()
		st, err := open()
		if err != nil {
			a.err = err
			return
		}
		a.kv = st.(*kvStore).kv
	}()
	return &kvStore{kv: a}, a.ready
}

// asyncKV is a kv that is still being opened.
type asyncKV struct {
	done chan struct{}
	kv   kv
	err  error
}

func (a *asyncKV) ready() error {
	<-a.done
	return a.err
}

func (a *asyncKV) get(key []byte) ([]byte, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	return a.kv.get(key)
}

func (a *asyncKV) scan(prefix []byte, fn func(key, val []byte) error) error {
	if err := a.ready(); err != nil {
		return err
	}
	return a.kv.scan(prefix, fn)
}

func (a *asyncKV) update(fn func(w kvWriter) error) error {
	if err := a.ready(); err != nil {
		return err
	}
	return a.kv.update(fn)
}

// close closes the store once it is open; one that failed to open has
// nothing to close.
func (a *asyncKV) close() error {
	if a.ready() != nil {
		return nil
	}
	return a.kv.close()
}
