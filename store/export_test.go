package store

// PagesWritten is the number of page writes (one per dirty page, plus the meta page) of
// every committed transaction so far: a machine-independent cost of a commit.
func (s *Store) PagesWritten() int64 {
	st := s.db.Stats()
	return st.TxStats.GetWrite()
}

// RingIndexLen is the size of the in-memory index of the ring: refs still queued or dead,
// and entries with a reverse list.
func (s *Store) RingIndexLen() (refs, entries int) {
	return len(s.ringIdx.m), len(s.ringIdx.rev)
}
