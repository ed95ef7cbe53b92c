// pause: the sandbox ("infra") container of every Pod in Ferry's local cluster. It holds the
// Pod's namespaces open, reaps orphans when it is PID 1 of a shared PID namespace, and exits 0
// on SIGINT or SIGTERM. Built locally (no image can be pulled here) by test/cluster/images.ts,
// playing the part of Kubernetes' build/pause/linux/pause.c.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		os.Stdout.WriteString("ferry-pause\n")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
