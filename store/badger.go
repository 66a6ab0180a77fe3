package store

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Open opens (creating if needed) the Badger store in dir. Badger allows one
// process per directory: a second Open fails with an error saying so.
//
// Writes are synced to disk before Update returns, so what the sync engine
// recorded survives a power loss; the engine batches writes to keep that cheap.
// Caches are kept small: the store holds maps, not message bodies.
func Open(dir string, log *zap.Logger) (Store, error) {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{log: orNop(log).Sugar()}).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(1 << 10).
		WithNumCompactors(2)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w (is another mailferry process using this data directory?)", dir, err)
	}
	return &kvStore{kv: &badgerKV{db: db}}, nil
}

func orNop(l *zap.Logger) *zap.Logger {
	if l == nil {
		return zap.NewNop()
	}
	return l
}

type badgerKV struct{ db *badger.DB }

func (k *badgerKV) get(key []byte) ([]byte, error) {
	var out []byte
	err := k.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	return out, err
}

func (k *badgerKV) scan(prefix []byte, fn func(key, val []byte) error) error {
	return k.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			err := item.Value(func(val []byte) error { return fn(item.Key(), val) })
			if err != nil {
				return err
			}
		}
		return nil
	})
}

type badgerWriter struct{ txn *badger.Txn }

func (w badgerWriter) set(key, val []byte) error { return w.txn.Set(key, val) }
func (w badgerWriter) del(key []byte) error      { return w.txn.Delete(key) }

func (k *badgerKV) update(fn func(kvWriter) error) error {
	return k.db.Update(func(txn *badger.Txn) error { return fn(badgerWriter{txn}) })
}

func (k *badgerKV) close() error { return k.db.Close() }

// badgerLogger sends Badger's chatter to zap, keeping only warnings and
// errors at their level.
type badgerLogger struct{ log *zap.SugaredLogger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Errorf("badger: "+f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warnf("badger: "+f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.log.Debugf("badger: "+f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.log.Debugf("badger: "+f, a...) }
