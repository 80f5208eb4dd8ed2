package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ForEachMeta calls fn with every stored metadata value (Slack message ids and the
// like), by sink then key; v is a copy. Used by migrate to copy a store.
func (s *Store) ForEachMeta(fn func(sink, key string, v []byte) error) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		return forSinks(tx, bktMeta, "", func(sink string, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				return fn(sink, string(k), append([]byte{}, v...))
			})
		})
	})
	if err != nil {
		return fmt.Errorf("read meta: %w", err)
	}
	return nil
}
