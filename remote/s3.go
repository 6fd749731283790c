package remote

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a Backend over an S3 bucket (AWS or any S3-compatible server),
// through minio-go: it signs with SigV4, retries 5xx, SlowDown and network
// errors with capped exponential backoff and jitter, and sends no checksum
// headers a non-AWS server could reject.
type S3 struct {
	client *minio.Client
	bucket string
	prefix string // "" or "a/b/"
	url    string
	// secret is kept only to scrub it from any error text that might
	// echo it (none is known to; this is belt and braces).
	secret string
	stats  Stats
}

// Stats count the requests a backend made, by kind.
type Stats struct {
	Heads, Puts, Gets, Lists, Deletes atomic.Int64
}

// Requests is the total number of requests.
func (s *Stats) Requests() int64 {
	return s.Heads.Load() + s.Puts.Load() + s.Gets.Load() + s.Lists.Load() + s.Deletes.Load()
}

// OpenS3 opens the remote cfg describes, with credentials from the AWS_*
// environment variables or, failing those, the shared credentials file
// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile AWS_PROFILE).
func OpenS3(cfg Config) (*S3, error) {
	bucket, prefix, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
	})
	v, err := creds.GetWithContext(nil)
	if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return nil, ErrNoCredentials
	}
	host, secure := "s3.amazonaws.com", true
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	lookup := minio.BucketLookupAuto
	if cfg.Endpoint != "" {
		// S3-compatible servers rarely have wildcard DNS for buckets.
		lookup = minio.BucketLookupPath
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", cfg.URL, err)
	}
	// Many small objects in flight at once: keep their connections.
	tr.MaxIdleConnsPerHost = 256
	c, err := minio.New(host, &minio.Options{
		Creds: creds, Secure: secure, Region: cfg.Region, BucketLookup: lookup,
		Transport: tr, MaxRetries: cfg.Retries,
	})
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", cfg.URL, err)
	}
	if prefix != "" {
		prefix += "/"
	}
	return &S3{client: c, bucket: bucket, prefix: prefix, url: "s3://" + bucket + "/" + prefix, secret: v.SecretAccessKey}, nil
}

var _ Backend = (*S3)(nil)

// Stats are the backend's request counters.
func (s *S3) Stats() *Stats { return &s.stats }

func (s *S3) String() string { return strings.TrimSuffix(s.url, "/") }

// wrap turns a client error into one that names the operation and object,
// maps missing objects and refused credentials to the sentinels, and holds
// no secret.
func (s *S3) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	where := s.url + key
	switch {
	case resp.Code == "NoSuchKey" || (resp.StatusCode == http.StatusNotFound && resp.Code == ""):
		return fmt.Errorf("%s %s: %w", op, where, ErrNotFound)
	case resp.Code == "NoSuchBucket":
		return fmt.Errorf("%s %s: bucket %s does not exist", op, where, s.bucket)
	case resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch" ||
		resp.Code == "AccessDenied" || resp.Code == "ExpiredToken" || resp.Code == "InvalidToken" ||
		// versitygw's answer to an unknown access key (with a 404).
		resp.Code == "XAdminUserNotFound" ||
		resp.StatusCode == http.StatusForbidden:
		code := resp.Code
		if code == "" {
			code = http.StatusText(resp.StatusCode)
		}
		return fmt.Errorf("%s %s: %w (%s): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the credentials file", op, where, ErrAuth, code)
	}
	return fmt.Errorf("%s %s: %w", op, where, redacted{err, s.secret})
}

// redacted is an error whose text never contains the secret, while
// errors.Is/As still see the cause (context.Canceled, net errors).
type redacted struct {
	err    error
	secret string
}

func (r redacted) Error() string {
	msg := r.err.Error()
	if r.secret != "" {
		msg = strings.ReplaceAll(msg, r.secret, "[secret]")
	}
	return msg
}

func (r redacted) Unwrap() error { return r.err }

func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	s.stats.Heads.Add(1)
	info, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.wrap("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: info.Size, LastModified: info.LastModified, ETag: strings.Trim(info.ETag, `"`)}, nil
}

func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	s.stats.Puts.Add(1)
	_, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, r, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		// One request for anything up to 64 MiB; beyond, multipart.
		PartSize: 64 << 20,
	})
	return s.wrap("put", key, err)
}

func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.stats.Gets.Add(1)
	// The core call is one GET whose errors (missing object, refused
	// credentials) surface here; minio.Client.GetObject would add a HEAD
	// per object to learn the same.
	body, _, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	return &wrappedReader{body: body, s: s, key: key}, nil
}

func (s *S3) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 || length <= 0 {
		return nil, fmt.Errorf("get %s%s: bad range %d+%d", s.url, key, offset, length)
	}
	s.stats.Gets.Add(1)
	var opts minio.GetObjectOptions
	if err := opts.SetRange(offset, offset+length-1); err != nil {
		return nil, fmt.Errorf("get %s%s: %w", s.url, key, err)
	}
	body, _, hdr, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, s.prefix+key, opts)
	if err != nil {
		if resp := minio.ToErrorResponse(err); resp.StatusCode == http.StatusRequestedRangeNotSatisfiable || resp.Code == "InvalidRange" {
			return nil, fmt.Errorf("get %s%s: range %d+%d: %w", s.url, key, offset, length, ErrRange)
		}
		return nil, s.wrap("get", key, err)
	}
	// minio accepts a 200 as well as a 206: only a Content-Range that
	// starts where asked says these are the bytes asked for.
	start, end, ok := parseContentRange(hdr.Get("Content-Range"))
	if !ok || start != offset || end > offset+length-1 {
		body.Close()
		return nil, fmt.Errorf("get %s%s: asked for bytes %d-%d, got Content-Range %q: %w", s.url, key, offset, offset+length-1, hdr.Get("Content-Range"), ErrRange)
	}
	return &wrappedReader{body: body, s: s, key: key}, nil
}

// parseContentRange parses "bytes START-END/SIZE" (SIZE may be "*").
func parseContentRange(v string) (start, end int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, _, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	return start, end, err1 == nil && err2 == nil && start >= 0 && end >= start
}

type wrappedReader struct {
	body io.ReadCloser
	s    *S3
	key  string
}

func (w *wrappedReader) Read(p []byte) (int, error) {
	n, err := w.body.Read(p)
	if err != nil && err != io.EOF {
		err = w.s.wrap("get", w.key, err)
	}
	return n, err
}

func (w *wrappedReader) Close() error { return w.body.Close() }

func (s *S3) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := int64(0)
	n := 0
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if obj.Err != nil {
			s.stats.Lists.Add(pages + 1)
			return s.wrap("list", prefix, obj.Err)
		}
		// One request per 1,000 keys (the page size).
		if n%1000 == 0 {
			pages++
		}
		n++
		if err := fn(ObjectInfo{Key: strings.TrimPrefix(obj.Key, s.prefix), Size: obj.Size, LastModified: obj.LastModified}); err != nil {
			s.stats.Lists.Add(pages)
			return err
		}
	}
	if pages == 0 {
		pages = 1
	}
	s.stats.Lists.Add(pages)
	return nil
}

func (s *S3) Delete(ctx context.Context, key string) error {
	s.stats.Deletes.Add(1)
	return s.wrap("delete", key, s.client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{}))
}

// MakeBucket creates the bucket if it does not exist (for tests and first
// set-up; teams normally create buckets with their own tooling).
func (s *S3) MakeBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.wrap("bucket", "", err)
	}
	if ok {
		return nil
	}
	return s.wrap("make bucket", "", s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{}))
}
