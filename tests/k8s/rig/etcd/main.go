// Command etcd is etcd's own server, built from go.etcd.io/etcd/server/v3 at
// the version the pinned kube-apiserver was released with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
