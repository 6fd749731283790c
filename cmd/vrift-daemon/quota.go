package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vrift/vrift/units"
)

// storeConfig is the config's store key: the flat `store = "/path"` of
// earlier versions, or the table
//
//	[store]
//	path = "/var/lib/vrift/the_source"
//	max_bytes = "500GiB"
//	min_free = "10GiB"
//
// (TOML cannot have both: a key is a string or a table.) It encodes as the
// table. A bad size is kept in bad and reported by parseConfig with its
// line (the decoder would name only the [store] line).
type storeConfig struct {
	Path     string     `toml:"path"`
	MaxBytes units.Size `toml:"max_bytes,omitempty"`
	MinFree  units.Size `toml:"min_free,omitempty"`
	bad      error
	badKey   string
}

func (s *storeConfig) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		s.Path = x
		return nil
	case map[string]any:
		for k, val := range x {
			switch k {
			case "path":
				p, ok := val.(string)
				if !ok {
					return fmt.Errorf("store.path: want a string, got %v", val)
				}
				s.Path = p
			case "max_bytes", "min_free":
				n, err := sizeOf(val)
				if err != nil {
					if s.bad == nil {
						s.bad, s.badKey = err, k
					}
					continue
				}
				if k == "max_bytes" {
					s.MaxBytes = units.Size(n)
				} else {
					s.MinFree = units.Size(n)
				}
			default:
				return fmt.Errorf("store.%s: unknown key (want path, max_bytes or min_free)", k)
			}
		}
		return nil
	}
	return fmt.Errorf("store: want a path or a [store] table, got %v", v)
}

// sizeOf reads a TOML size: a string with a unit, or an integer (bytes).
func sizeOf(v any) (int64, error) {
	switch x := v.(type) {
	case string:
		return units.ParseSize(x)
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("size %d: negative", x)
		}
		return x, nil
	}
	return 0, fmt.Errorf("want a size such as \"10GiB\", got %v", v)
}

// checkStoreSizes reports a bad [store] size with its line in data.
func checkStoreSizes(data []byte, s storeConfig) error {
	if s.bad == nil {
		return nil
	}
	where := ""
	if n := keyLine(data, "store", s.badKey); n > 0 {
		where = fmt.Sprintf("line %d: ", n)
	}
	return fmt.Errorf("%sstore.%s: %w", where, s.badKey, s.bad)
}

// quotaConfig is the [quota] table; sizes are checked as they are decoded
// (the TOML decoder names the line of a bad one).
type quotaConfig struct {
	Default units.Size            `toml:"default"`
	Users   map[string]units.Size `toml:"users"`
}

type metricsConfig struct {
	Addr string `toml:"addr"`
}

// limits are the checked quota and store limits.
type limits struct {
	quotaDefault int64
	quotaUsers   map[uint32]int64
	maxBytes     int64
	minFree      int64
}

// checkLimits resolves user names, naming the config line of an unknown
// one: src is the config file's text (nil when there is none). Sizes were
// checked when the file was parsed.
func checkLimits(path string, src []byte, cfg config) (limits, error) {
	l := limits{quotaDefault: int64(cfg.Quota.Default), quotaUsers: map[uint32]int64{},
		maxBytes: int64(cfg.Store.MaxBytes), minFree: int64(cfg.Store.MinFree)}
	for name, lim := range cfg.Quota.Users {
		uid, err := lookupUID(name)
		if err != nil {
			where := path
			if n := keyLine(src, "quota.users", name); n > 0 {
				where = fmt.Sprintf("%s line %d", path, n)
			}
			return l, fmt.Errorf("%s: quota.users.%s: %w", where, name, err)
		}
		l.quotaUsers[uid] = int64(lim)
	}
	return l, nil
}

// lookupUID reads a user name or a numeric uid.
func lookupUID(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("unknown user %q (give a local user name or a uid)", name)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has a non-numeric uid %q", name, u.Uid)
	}
	return uint32(n), nil
}

var tableRE = regexp.MustCompile(`^\s*\[\s*([^\]]+?)\s*\]`)

// keyLine finds the line (from 1) of key in table ("" for the top level)
// in a TOML text; 0 if not found. It reads only plain `key = ...` lines
// under `[table]` headers, which is how the packaged config is written.
func keyLine(src []byte, table, key string) int {
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := tableRE.FindStringSubmatch(line); m != nil {
			cur = strings.ReplaceAll(m[1], " ", "")
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if ok && cur == table && strings.Trim(strings.TrimSpace(k), `"'`) == key {
			return n
		}
	}
	return 0
}

// serveMetrics serves /metrics on addr until ctx ends.
func serveMetrics(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", l.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}, nil
}
