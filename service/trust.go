package service

import (
	"fmt"

	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/teamcache"
	"github.com/vrift/vrift/trust"
)

// checkTree applies the daemon's trusted keys to a tree a caller pulls,
// then the caller's own (which can only refuse more: AllowUnsigned waives
// the caller's keys, never the daemon's). It returns the daemon's signer
// if it has keys, else the caller's.
func (r *TeamCache) checkTree(p rpc.RemotePullParams, raw []byte) (*trust.Signer, error) {
	signer, err := teamcache.TrustOptions{Policy: r.Trust}.CheckTree(p.Name, raw)
	if err != nil {
		return nil, fmt.Errorf("%w (refused by the daemon's trusted keys, which --allow-unsigned does not override)", err)
	}
	if len(p.TrustedKeys) == 0 || p.AllowUnsigned {
		return signer, nil
	}
	mine, err := trust.NewPolicy(p.TrustedKeys)
	if err != nil {
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "your trusted keys: %v", err)
	}
	s, err := teamcache.TrustOptions{Policy: mine}.CheckTree(p.Name, raw)
	if err != nil {
		return nil, err
	}
	if signer == nil {
		signer = s
	}
	return signer, nil
}
