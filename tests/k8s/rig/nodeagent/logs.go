package main

// Container logs the way a kubelet serves them, for `kubectl logs` and the
// conformance suite's mirror tests (which read the mirrored backend's logs
// through pods/log): the API server proxies GET pods/NAME/log to
// https://<Node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/NS/POD/CONTAINER.
//
// Each line a process writes is stored with the time it arrived
// (`<RFC 3339 nano> <line>`), so sinceTime, sinceSeconds and timestamps can be
// honoured. The endpoint listens on the bridge address, which only this host
// reaches, with a self-signed certificate (the API server verifies a
// kubelet's certificate only when given --kubelet-certificate-authority, and
// the rig gives none) and no client authentication: a test stand-in.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// kubeletPort is where the logs endpoint listens on the bridge address (the
// kubelet's usual port; the address is the agent's own, so agents never
// collide).
const kubeletPort = 10250

// timestampedWriter copies a process's output into a log file, one stored
// line per output line, each prefixed with its arrival time.
func timestampedWriter(file *os.File) (io.WriteCloser, <-chan struct{}) {
	reader, writer := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer file.Close()
		scanner := bufio.NewScanner(reader)
		scanner.Buffer(make([]byte, 64*1024), 1024*1024)
		for scanner.Scan() {
			fmt.Fprintf(file, "%s %s\n", time.Now().UTC().Format(time.RFC3339Nano), scanner.Text())
		}
		_, _ = io.Copy(io.Discard, reader)
	}()
	return writer, done
}

// serveLogs answers /containerLogs/NS/POD/CONTAINER until the listener fails.
func (a *agent) serveLogs() error {
	cert, err := selfSignedCertificate(a.net.gateway.String())
	if err != nil {
		return err
	}
	address := net.JoinHostPort(a.net.gateway.String(), strconv.Itoa(kubeletPort))
	listener, err := tls.Listen("tcp", address, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return fmt.Errorf("listen for container logs on %s: %v", address, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/{namespace}/{pod}/{container}", a.containerLogs)
	go func() {
		err := http.Serve(listener, mux) //nolint:gosec // a test stand-in on a host-only address
		log.Printf("container logs endpoint stopped: %v", err)
	}()
	return nil
}

func (a *agent) containerLogs(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("namespace") + "/" + r.PathValue("pod")
	a.mu.Lock()
	run := a.pods[key]
	a.mu.Unlock()
	if run == nil {
		http.Error(w, "no pod "+key+" runs on this node", http.StatusNotFound)
		return
	}
	container := filepath.Base(r.PathValue("container"))
	text, err := os.ReadFile(filepath.Join(run.dir, container+".log"))
	if err != nil {
		http.Error(w, "no log for container "+container, http.StatusNotFound)
		return
	}
	query := r.URL.Query()
	var since time.Time
	if v := query.Get("sinceTime"); v != "" {
		since, _ = time.Parse(time.RFC3339, v)
	}
	if v := query.Get("sinceSeconds"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			since = time.Now().Add(-time.Duration(n) * time.Second)
		}
	}
	withTimestamps := query.Get("timestamps") == "true"
	var lines []string
	for _, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		stamp, rest, ok := strings.Cut(line, " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if !ok || err != nil || at.Before(since) {
			continue
		}
		if withTimestamps {
			rest = line
		}
		lines = append(lines, rest)
	}
	if v := query.Get("tailLines"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 && n < len(lines) {
			lines = lines[len(lines)-n:]
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	for _, line := range lines {
		fmt.Fprintln(w, line)
	}
}

// selfSignedCertificate is a fresh ECDSA certificate for ip, valid a day.
func selfSignedCertificate(ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "portcullis-test-nodeagent"},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
