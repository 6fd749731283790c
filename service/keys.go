package service

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"

	"github.com/vrift/vrift/cas"
)

// keyList is a manifest's distinct blob keys, sorted bytewise and packed in
// the accounting's encoding (encKey, keyLen bytes each): 41 bytes a key in
// one allocation. A pin of a 1M-file manifest held them as a []cas.Key
// (48 bytes each, grown by append) and diffed a re-pin against the old
// root's keys through a map of strings (issue 22); sorted, both sides of a
// diff are merged in one pass with nothing more held.
type keyList []byte

// Len is the number of keys.
func (l keyList) Len() int { return len(l) / keyLen }

// At is the i-th key's encoding (a view into l).
func (l keyList) At(i int) []byte { return l[i*keyLen : (i+1)*keyLen : (i+1)*keyLen] }

// errKeyOrder: a key list (the reader child's output, a root's record)
// is not sorted and distinct, which every merge over it relies on.
var errKeyOrder = errors.New("blob keys out of order")

// check reports whether l is whole, sorted and distinct.
func (l keyList) check() error {
	if len(l)%keyLen != 0 {
		return errKeyOrder
	}
	for i := 1; i < l.Len(); i++ {
		if bytes.Compare(l.At(i-1), l.At(i)) >= 0 {
			return errKeyOrder
		}
	}
	return nil
}

// keyCollector gathers a walk's keys (keyLen bytes each, every file's,
// duplicates included) and sorts them once the walk is done.
type keyCollector struct{ b []byte }

// grow makes room for n keys: a walk that knows its manifest's entries
// fills one allocation instead of growing by copies (the reader child of
// a 1M-file pin peaked at 311 MB while its list grew, 41 MB of keys).
func (c *keyCollector) grow(n int) { c.b = slices.Grow(c.b, n*keyLen) }

func (c *keyCollector) add(k cas.Key) error {
	c.b = appendKey(c.b, k)
	return nil
}

// order sorts an index of the keys (4 bytes a key) and returns the
// distinct ones' positions, in key order.
func (c *keyCollector) order() []uint32 {
	l := keyList(c.b)
	idx := make([]uint32, l.Len())
	for i := range idx {
		idx[i] = uint32(i)
	}
	slices.SortFunc(idx, func(x, y uint32) int { return bytes.Compare(l.At(int(x)), l.At(int(y))) })
	return slices.CompactFunc(idx, func(x, y uint32) bool { return bytes.Equal(l.At(int(x)), l.At(int(y))) })
}

// sorted returns the keys sorted and distinct, in a new list.
func (c *keyCollector) sorted() keyList {
	l := keyList(c.b)
	idx := c.order()
	out := make(keyList, 0, len(idx)*keyLen)
	for _, x := range idx {
		out = append(out, l.At(int(x))...)
	}
	return out
}

// writeSorted writes the count of distinct keys (8 bytes, little-endian)
// and then the keys, sorted, with no second copy of them.
func (c *keyCollector) writeSorted(w io.Writer) error {
	l := keyList(c.b)
	idx := c.order()
	if _, err := w.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(idx)))); err != nil {
		return err
	}
	for _, x := range idx {
		if _, err := w.Write(l.At(int(x))); err != nil {
			return err
		}
	}
	return nil
}

// merger walks two sorted, distinct key lists in step; i and j are its
// positions in a and b, so a walk may stop and resume (AddRoot's steps).
type merger struct {
	a, b keyList
	i, j int
}

// done reports whether both lists are walked.
func (m *merger) done() bool { return m.i == m.a.Len() && m.j == m.b.Len() }

// next returns the next key and whether it is in a, in b, or both; call
// it only while !done.
func (m *merger) next() (kb []byte, inA, inB bool) {
	c := 1
	switch {
	case m.i == m.a.Len():
	case m.j == m.b.Len():
		c = -1
	default:
		c = bytes.Compare(m.a.At(m.i), m.b.At(m.j))
	}
	switch {
	case c < 0:
		m.i++
		return m.a.At(m.i - 1), true, false
	case c > 0:
		m.j++
		return m.b.At(m.j - 1), false, true
	}
	m.i, m.j = m.i+1, m.j+1
	return m.a.At(m.i - 1), true, true
}

// merge calls fn with each key of a and b, in order, and whether it is in
// a, in b, or both.
func merge(a, b keyList, fn func(kb []byte, inA, inB bool) error) error {
	m := merger{a: a, b: b}
	for !m.done() {
		if err := fn(m.next()); err != nil {
			return err
		}
	}
	return nil
}
