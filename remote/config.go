package remote

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Config locates a remote (config.toml's [remote] table, read by package
// internal/config). It holds no secret: credentials come from the
// environment or a credentials file when the backend is opened.
type Config struct {
	// URL is s3://bucket or s3://bucket/prefix.
	URL string `toml:"url"`
	// Endpoint is the S3 endpoint, e.g. https://s3.eu-west-1.amazonaws.com
	// or http://127.0.0.1:7070 (default: AWS).
	Endpoint string `toml:"endpoint"`
	Region   string `toml:"region"`
	// Push allows pushes through the daemon (daemon config only).
	Push bool `toml:"push"`
	// Retries is how many times a failed request is tried again (5xx,
	// SlowDown, connection errors), with exponential backoff; 0 keeps the
	// client's default of 10.
	Retries int `toml:"retries"`
	// SignKey is the secret key file a push signs trees with (user
	// config; docs/team-cache-trust.md). The file is read only when a
	// push signs.
	SignKey string `toml:"sign_key"`
	// TrustedKeys are public key lines, NAME:<base64>: once there is one,
	// a pull refuses a tree none of them signed for its name. In the
	// daemon's config they bind every pull through the daemon.
	TrustedKeys []string `toml:"trusted_keys"`
}

// Merge returns c with every non-empty field of over replacing c's.
func (c Config) Merge(over Config) Config {
	if over.URL != "" {
		c.URL = over.URL
	}
	if over.Endpoint != "" {
		c.Endpoint = over.Endpoint
	}
	if over.Region != "" {
		c.Region = over.Region
	}
	if over.Retries != 0 {
		c.Retries = over.Retries
	}
	if over.SignKey != "" {
		c.SignKey = over.SignKey
	}
	if over.TrustedKeys != nil {
		c.TrustedKeys = over.TrustedKeys
	}
	return c
}

// ParseURL splits s3://bucket/prefix into bucket and prefix (without
// leading or trailing slashes).
func ParseURL(s string) (bucket, prefix string, err error) {
	if s == "" {
		return "", "", errors.New("no remote configured: pass --remote s3://bucket/prefix or set [remote] url in the config file")
	}
	u, err := url.Parse(s)
	if (err == nil && u.User != nil) || strings.Contains(s, "@") {
		// Never echo a URL that carries credentials.
		return "", "", errors.New("remote URL: credentials do not go in the URL; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a credentials file")
	}
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("remote %q: want s3://bucket or s3://bucket/prefix", s)
	}
	prefix = strings.Trim(u.Path, "/")
	for _, c := range strings.Split(prefix, "/") {
		if prefix != "" && (c == "" || c == "." || c == "..") {
			return "", "", fmt.Errorf("remote %q: bad prefix", s)
		}
	}
	return u.Host, prefix, nil
}
