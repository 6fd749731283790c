package remote

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is a Backend held in memory: for tests of what runs above a
// Backend, where a real server adds nothing but time. The backend suite
// (backend_test.go) runs the same cases against it and against a real S3
// server (versitygw), so it behaves as S3 does wherever the team cache
// relies on it: missing objects are ErrNotFound, a put is whole or absent,
// lists are in key order.
type Memory struct {
	name string
	mu   sync.Mutex
	objs map[string]memObject
}

type memObject struct {
	data []byte
	mod  time.Time
	etag string
}

// NewMemory returns an empty in-memory backend; name is what String says
// (mem://name).
func NewMemory(name string) *Memory {
	return &Memory{name: name, objs: map[string]memObject{}}
}

var _ Backend = (*Memory)(nil)

func (m *Memory) String() string { return "mem://" + m.name }

func (m *Memory) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	m.mu.Lock()
	o, ok := m.objs[key]
	m.mu.Unlock()
	if !ok {
		return ObjectInfo{}, fmt.Errorf("stat %s/%s: %w", m, key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: int64(len(o.data)), LastModified: o.mod, ETag: o.etag}, nil
}

// Put stores exactly size bytes of r; a reader that ends early or has more
// stores nothing, as S3 does.
func (m *Memory) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if size < 0 {
		return fmt.Errorf("put %s/%s: negative size %d", m, key, size)
	}
	data, err := io.ReadAll(io.LimitReader(r, size+1))
	if err == nil && int64(len(data)) != size {
		err = fmt.Errorf("read %d bytes, announced %d", len(data), size)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", m, key, err)
	}
	sum := md5.Sum(data)
	m.mu.Lock()
	m.objs[key] = memObject{data: data, mod: time.Now().UTC(), etag: hex.EncodeToString(sum[:])}
	m.mu.Unlock()
	return nil
}

// object returns the object for a read. Its data is never written again
// (a put replaces it): no copy.
func (m *Memory) object(ctx context.Context, key string) (memObject, error) {
	if err := ctx.Err(); err != nil {
		return memObject{}, err
	}
	m.mu.Lock()
	o, ok := m.objs[key]
	m.mu.Unlock()
	if !ok {
		return memObject{}, fmt.Errorf("get %s/%s: %w", m, key, ErrNotFound)
	}
	return o, nil
}

func (m *Memory) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	o, err := m.object(ctx, key)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

func (m *Memory) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 || length <= 0 {
		return nil, fmt.Errorf("get %s/%s: bad range %d+%d", m, key, offset, length)
	}
	o, err := m.object(ctx, key)
	if err != nil {
		return nil, err
	}
	if offset >= int64(len(o.data)) {
		return nil, fmt.Errorf("get %s/%s: range %d+%d past the end (%d bytes): %w", m, key, offset, length, len(o.data), ErrRange)
	}
	return io.NopCloser(bytes.NewReader(o.data[offset:min(offset+length, int64(len(o.data)))])), nil
}

func (m *Memory) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	m.mu.Lock()
	var infos []ObjectInfo
	for k, o := range m.objs {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, ObjectInfo{Key: k, Size: int64(len(o.data)), LastModified: o.mod, ETag: o.etag})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(infos, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.objs, key)
	m.mu.Unlock()
	return nil
}
