package store

import (
	"bytes"
	"slices"
	"sync"
)

// NewMemory returns an empty Store that lives in memory only: for tests and
// the demo.
func NewMemory() Store { return &kvStore{kv: &memKV{m: map[string][]byte{}}} }

type memKV struct {
	mu sync.RWMutex
	m  map[string][]byte
}

func (k *memKV) get(key []byte) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	v, ok := k.m[string(key)]
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

func (k *memKV) scan(prefix []byte, fn func(key, val []byte) error) error {
	k.mu.RLock()
	var keys []string
	for key := range k.m {
		if bytes.HasPrefix([]byte(key), prefix) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	vals := make([][]byte, len(keys))
	for i, key := range keys {
		vals[i] = k.m[key]
	}
	k.mu.RUnlock()
	for i, key := range keys {
		if err := fn([]byte(key), vals[i]); err != nil {
			return err
		}
	}
	return nil
}

type memBatch struct {
	sets map[string][]byte
	dels map[string]bool
}

func (b *memBatch) set(key, val []byte) error {
	delete(b.dels, string(key))
	b.sets[string(key)] = append([]byte(nil), val...)
	return nil
}

func (b *memBatch) del(key []byte) error {
	delete(b.sets, string(key))
	b.dels[string(key)] = true
	return nil
}

func (k *memKV) update(fn func(kvWriter) error) error {
	b := &memBatch{sets: map[string][]byte{}, dels: map[string]bool{}}
	if err := fn(b); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for key := range b.dels {
		delete(k.m, key)
	}
	for key, val := range b.sets {
		k.m[key] = val
	}
	return nil
}

func (k *memKV) close() error { return nil }
