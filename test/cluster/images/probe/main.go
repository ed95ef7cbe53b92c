// probe: the tiny program in the local cluster's smoke-test image (test/cluster/verify.ts).
//
//	probe write <path> <text>   writes text to path, reads it back, prints it, exits 0
//	probe api                   GETs /version from the API server through the `kubernetes`
//	                            Service with the Pod's service-account token, verifying TLS
//	                            with the projected CA; retries for 60 s while kube-proxy syncs
//	probe serve <port>          answers every HTTP request with "ok from <hostname>"
//	probe get <url>             GETs url, prints the body; retries for 60 s
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe write <path> <text> | probe api | probe serve <port> | probe get <url>")
	}
	switch os.Args[1] {
	case "write":
		if len(os.Args) != 4 {
			fail("usage: probe write <path> <text>")
		}
		if err := os.WriteFile(os.Args[2], []byte(os.Args[3]), 0o644); err != nil {
			fail("write: %v", err)
		}
		back, err := os.ReadFile(os.Args[2])
		if err != nil {
			fail("read back: %v", err)
		}
		fmt.Printf("wrote %s: %s\n", os.Args[2], back)
	case "api":
		api()
	case "serve":
		if len(os.Args) != 3 {
			fail("usage: probe serve <port>")
		}
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "ok from %s\n", host) })
		fail("serve: %v", http.ListenAndServe(":"+os.Args[2], nil))
	case "get":
		if len(os.Args) != 3 {
			fail("usage: probe get <url>")
		}
		getWithRetry(os.Args[2])
	default:
		fail("unknown command %q", os.Args[1])
	}
}

func api() {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		fail("KUBERNETES_SERVICE_HOST/PORT are not set")
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		fail("service-account token: %v", err)
	}
	caPEM, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		fail("service-account CA: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		fail("no certificate in %s/ca.crt", saDir)
	}
	// The Service IP is dialled, the certificate checked for the Service's DNS name: no
	// cluster DNS runs, but the serving certificate names kubernetes.default.svc.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "kubernetes.default.svc"},
	}}
	url := "https://" + net.JoinHostPort(host, port) + "/version"
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body, err := get(client, url, string(token))
		if err == nil && status == http.StatusOK {
			var version struct{ GitVersion string }
			if err := json.Unmarshal(body, &version); err != nil {
				fail("decode /version: %v", err)
			}
			fmt.Printf("reached %s through the kubernetes Service: %s\n", url, version.GitVersion)
			return
		}
		if time.Now().After(deadline) {
			fail("GET %s: status %d, error %v, body %s", url, status, err, body)
		}
		fmt.Fprintf(os.Stderr, "GET %s: status %d, error %v; retrying\n", url, status, err)
		time.Sleep(time.Second)
	}
}

func getWithRetry(url string) {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body, err := get(client, url, "")
		if err == nil && status == http.StatusOK {
			fmt.Printf("GET %s: %s", url, body)
			return
		}
		if time.Now().After(deadline) {
			fail("GET %s: status %d, error %v", url, status, err)
		}
		fmt.Fprintf(os.Stderr, "GET %s: status %d, error %v; retrying\n", url, status, err)
		time.Sleep(time.Second)
	}
}

func get(client *http.Client, url, token string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, body, err
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "probe: "+format+"\n", args...)
	os.Exit(1)
}
