// Command berth-csi is the test cluster's CSI driver (ci/cluster/csi): each volume a sparse
// file, Filesystem volumes ext4 on a loop device, Block volumes the loop device itself, growth
// by truncate + losetup -c + resize2fs. It serves the CSI socket (Identity, Controller, Node)
// and the kubelet's plugin registration socket; ci/cluster/up runs it on the node.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/berth-vm/berth/ci/cluster/csi/internal/driver"
	"github.com/berth-vm/berth/ci/cluster/csi/internal/registration"
	"github.com/berth-vm/berth/ci/cluster/csi/internal/volume"
)

var version = "dev"

func main() {
	name := flag.String("driver-name", "csi.berth.dev", "the CSI driver name")
	csiSocket := flag.String("csi-socket", "", "the CSI socket to serve (required)")
	kubeletDir := flag.String("kubelet-dir", "", "the kubelet's --root-dir; the registration socket goes in its plugins_registry (required)")
	volumeDir := flag.String("volume-dir", "", "the directory of the volumes' files (required)")
	nodeID := flag.String("node-id", "", "the Kubernetes node name (required)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	for flagName, v := range map[string]string{"csi-socket": *csiSocket, "kubelet-dir": *kubeletDir, "volume-dir": *volumeDir, "node-id": *nodeID} {
		if v == "" || (flagName != "node-id" && !filepath.IsAbs(v)) {
			fmt.Fprintf(os.Stderr, "berth-csi: -%s is required (an absolute path, or for -node-id a name)\n", flagName)
			os.Exit(2)
		}
	}
	if err := run(log, *name, *csiSocket, *kubeletDir, *volumeDir, *nodeID); err != nil {
		log.Error("berth-csi failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, name, csiSocket, kubeletDir, volumeDir, nodeID string) error {
	d := &driver.Driver{Name: name, Version: version, NodeID: nodeID, Store: volume.Store{Dir: volumeDir}, Log: log}
	csiServer := grpc.NewServer(grpc.UnaryInterceptor(driver.LogCalls(log)))
	d.Register(csiServer)
	regServer := grpc.NewServer()
	registerapi.RegisterRegistrationServer(regServer, &registration.Server{Driver: name, Endpoint: csiSocket, Log: log})

	csiListener, err := listen(csiSocket)
	if err != nil {
		return err
	}
	regSocket := filepath.Join(kubeletDir, "plugins_registry", registration.SocketName(name))
	regListener, err := listen(regSocket)
	if err != nil {
		return err
	}
	errs := make(chan error, 2)
	go func() { errs <- csiServer.Serve(csiListener) }()
	go func() { errs <- regServer.Serve(regListener) }()
	log.Info("serving", "driver", name, "version", version, "csi", csiSocket, "registration", regSocket, "volumes", volumeDir)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		log.Info("stopping", "signal", s.String())
	case err = <-errs:
	}
	regServer.Stop()
	csiServer.GracefulStop()
	_ = os.Remove(regSocket)
	_ = os.Remove(csiSocket)
	return err
}

// listen serves a unix socket at path, replacing a stale socket (never another kind of file).
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return l, nil
}
