// Package driver is the CSI driver's three gRPC services over the volume store and the node:
// Identity, Controller (create, delete, expand) and Node (publish, unpublish, expand). It runs on
// the one node of the test cluster, so the controller and the node share the files.
package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-vm/berth/ci/cluster/csi/internal/volume"
)

// Driver is what the three services share.
type Driver struct {
	Name    string // the CSI driver name (CSIDriver object, StorageClass provisioner)
	Version string
	NodeID  string // the Kubernetes node's name
	Store   volume.Store
	Log     *slog.Logger

	// mu serializes every operation: the CO may repeat a call while the first still runs, and
	// losetup/mount of the same volume must not race.
	mu sync.Mutex
}

// Register adds the Identity, Controller and Node services to s.
func (d *Driver) Register(s *grpc.Server) {
	csi.RegisterIdentityServer(s, &identity{d: d})
	csi.RegisterControllerServer(s, &controller{d: d})
	csi.RegisterNodeServer(s, &node{d: d})
}

// LogCalls is a gRPC interceptor logging each call with its outcome.
func LogCalls(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			log.Warn("call failed", "method", info.FullMethod, "request", fmt.Sprint(req), "err", err)
		} else if info.FullMethod != "/csi.v1.Identity/Probe" {
			log.Info("call", "method", info.FullMethod, "request", fmt.Sprint(req))
		}
		return resp, err
	}
}

// kindOf is the volume kind a capability asks for.
func kindOf(c *csi.VolumeCapability) (volume.Kind, error) {
	switch {
	case c == nil:
		return "", errors.New("volume capability missing")
	case c.GetBlock() != nil:
		return volume.Block, nil
	case c.GetMount() != nil:
		if fs := c.GetMount().GetFsType(); fs != "" && fs != "ext4" {
			return "", fmt.Errorf("fsType %q: only ext4", fs)
		}
		return volume.Filesystem, nil
	}
	return "", errors.New("volume capability has neither block nor mount access")
}

// singleNode is every access mode a volume on one node's file can offer.
var singleNode = map[csi.VolumeCapability_AccessMode_Mode]bool{
	csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER:        true,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:   true,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER: true,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:  true,
}

// kindOfAll is the one kind every capability asks for, each with a single-node access mode.
func kindOfAll(caps []*csi.VolumeCapability) (volume.Kind, error) {
	if len(caps) == 0 {
		return "", errors.New("volume capabilities missing")
	}
	var kind volume.Kind
	for _, c := range caps {
		k, err := kindOf(c)
		if err != nil {
			return "", err
		}
		if kind != "" && k != kind {
			return "", errors.New("volume capabilities ask for both block and mount access")
		}
		kind = k
		if m := c.GetAccessMode().GetMode(); !singleNode[m] {
			return "", fmt.Errorf("access mode %s: only single-node modes (ReadWriteOnce, ReadWriteOncePod)", m)
		}
	}
	return kind, nil
}

// codeOf maps the store's errors to gRPC status codes.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, volume.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, volume.ErrExists):
		return codes.AlreadyExists
	case errors.Is(err, volume.ErrRange):
		return codes.OutOfRange
	}
	return codes.Internal
}

func statusOf(err error) error { return status.Error(codeOf(err), err.Error()) }

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
