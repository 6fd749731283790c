package rpc

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/vrift/vrift/cas"
)

// Putter stores files through the daemon for one ingest session. Concurrent
// PutFile calls are gathered into ingest.put frames of up to MaxFDs
// descriptors: one descriptor per round trip would be dominated by latency.
// It implements engine.BlobWriter.
type Putter struct {
	c       *Client
	session string
	reqs    chan *putReq
	done    chan struct{}
	wg      sync.WaitGroup
}

type putReq struct {
	f    *os.File
	exec bool
	res  cas.PutResult
	err  error
	done chan struct{}
}

// NewPutter starts a putter for session.
func NewPutter(c *Client, session string) *Putter {
	p := &Putter{c: c, session: session, reqs: make(chan *putReq, 4*MaxFDs), done: make(chan struct{})}
	p.wg.Add(1)
	go p.loop()
	return p
}

// Workers is how many files an ingest should have open at once to fill
// frames.
const Workers = 2 * MaxFDs

func (p *Putter) loop() {
	defer p.wg.Done()
	for {
		var batch []*putReq
		select {
		case r := <-p.reqs:
			batch = append(batch, r)
		case <-p.done:
			return
		}
	fill:
		for len(batch) < MaxFDs {
			select {
			case r := <-p.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		p.send(batch)
	}
}

func (p *Putter) send(batch []*putReq) {
	params := PutParams{Session: p.session, Files: make([]PutFile, len(batch))}
	files := make([]*os.File, len(batch))
	for i, r := range batch {
		params.Files[i] = PutFile{Name: r.f.Name(), Exec: r.exec}
		files[i] = r.f
	}
	var res PutResults
	err := p.c.CallWithFiles(context.Background(), MethodIngestPut, params, files, &res)
	if err == nil && len(res.Results) != len(batch) {
		err = fmt.Errorf("daemon answered %d results for %d files", len(res.Results), len(batch))
	}
	for i, r := range batch {
		switch {
		case err != nil:
			r.err = err
		case res.Results[i].Private:
			r.err = cas.ErrNotShared
		case res.Results[i].Error != "":
			r.err = fmt.Errorf("daemon: %s", res.Results[i].Error)
		default:
			k, perr := cas.ParseName(res.Results[i].Blob)
			r.res, r.err = cas.PutResult{Key: k, New: res.Results[i].New}, perr
		}
		close(r.done)
	}
}

// PutFile passes f to the daemon, which stores what it reads through it.
func (p *Putter) PutFile(ctx context.Context, f *os.File, exec bool) (cas.PutResult, error) {
	r := &putReq{f: f, exec: exec, done: make(chan struct{})}
	select {
	case p.reqs <- r:
	case <-ctx.Done():
		return cas.PutResult{}, ctx.Err()
	}
	<-r.done // the descriptor must stay open until the frame is sent
	return r.res, r.err
}

// Sync asks the daemon to make the session's blobs durable.
func (p *Putter) Sync(ctx context.Context) error {
	return p.c.Call(ctx, MethodIngestFlush, SessionParams{Session: p.session}, nil)
}

// Close stops the putter.
func (p *Putter) Close() {
	close(p.done)
	p.wg.Wait()
}
