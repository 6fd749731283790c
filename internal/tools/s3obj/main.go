// Command s3obj puts or gets one object with vrift's S3 client, for the
// team-cache bench's baseline (a tarball uploaded as one object): the
// baseline and vrift then use the same client against the same server.
//
//	s3obj --remote s3://bucket/prefix --endpoint URL put KEY FILE
//	s3obj --remote s3://bucket/prefix --endpoint URL get KEY   (to stdout)
//
// It prints the number of requests made on stderr as "requests N".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vrift/vrift/remote"
)

func main() {
	url := flag.String("remote", "", "s3://bucket/prefix")
	endpoint := flag.String("endpoint", "", "S3 endpoint URL")
	flag.Parse()
	if err := run(*url, *endpoint, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "s3obj:", err)
		os.Exit(1)
	}
}

func run(url, endpoint string, args []string) error {
	b, err := remote.OpenS3(remote.Config{URL: url, Endpoint: endpoint})
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch {
	case len(args) == 3 && args[0] == "put":
		f, err := os.Open(args[2])
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return err
		}
		if err := b.Put(ctx, args[1], f, info.Size()); err != nil {
			return err
		}
	case len(args) == 2 && args[0] == "get":
		rc, err := b.Get(ctx, args[1])
		if err != nil {
			return err
		}
		defer rc.Close()
		if _, err := io.Copy(os.Stdout, rc); err != nil {
			return err
		}
	default:
		return fmt.Errorf("usage: s3obj --remote URL --endpoint URL put KEY FILE | get KEY")
	}
	fmt.Fprintf(os.Stderr, "requests %d\n", b.Stats().Requests())
	return nil
}
