package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-vm/berth/ci/cluster/csi/internal/host"
	"github.com/berth-vm/berth/ci/cluster/csi/internal/volume"
)

type node struct {
	csi.UnimplementedNodeServer
	d *Driver
}

func (s *node) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: s.d.NodeID}, nil
}

func (s *node) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{Capabilities: []*csi.NodeServiceCapability{
		{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{
			Type: csi.NodeServiceCapability_RPC_EXPAND_VOLUME}}},
	}}, nil
}

// NodePublishVolume attaches the volume's file to a loop device and mounts its ext4 at the
// target directory (Filesystem) or bind-mounts the device onto the target file (Block). An ext4
// smaller than its file (grown while it was not mounted) is grown first, offline.
func (s *node) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if req.GetVolumeId() == "" || target == "" || !filepath.IsAbs(target) {
		return nil, invalid("volume id and an absolute target path are required")
	}
	kind, err := kindOf(req.GetVolumeCapability())
	if err != nil {
		return nil, invalid("%v", err)
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	v, err := s.d.Store.Lookup(req.GetVolumeId())
	if err != nil {
		return nil, statusOf(err)
	}
	if v.Kind != kind {
		return nil, invalid("volume %s is %s, the capability asks for %s", v.ID, v.Kind, kind)
	}
	mounts, err := host.Mounts()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if host.MountedAt(mounts, target) {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	dev, err := host.LoopFor(v.Path)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if dev == "" && kind == volume.Filesystem {
		if err := s.growOffline(ctx, v); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if dev, err = host.AttachLoop(ctx, v.Path); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := s.mount(ctx, req, kind, dev, target); err != nil {
		s.detachUnused(ctx, dev)
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.d.Log.Info("volume published", "volume", v.ID, "device", dev, "target", target)
	return &csi.NodePublishVolumeResponse{}, nil
}

func (s *node) growOffline(ctx context.Context, v volume.Volume) error {
	fsBytes, err := host.Ext4Bytes(ctx, v.Path)
	if err != nil {
		return err
	}
	if fsBytes >= v.Size {
		return nil
	}
	s.d.Log.Info("growing ext4 offline", "volume", v.ID, "from", fsBytes, "to", v.Size)
	return host.GrowExt4Offline(ctx, v.Path)
}

func (s *node) mount(ctx context.Context, req *csi.NodePublishVolumeRequest, kind volume.Kind, dev, target string) error {
	if kind == volume.Block {
		if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
			return fmt.Errorf("target's directory: %w", err)
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY|syscall.O_NOFOLLOW, 0o640)
		if err != nil {
			return fmt.Errorf("target file: %w", err)
		}
		f.Close()
		return host.BindDevice(ctx, dev, target)
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("target directory: %w", err)
	}
	opts := req.GetVolumeCapability().GetMount().GetMountFlags()
	if req.GetReadonly() {
		opts = append(opts, "ro")
	}
	return host.MountExt4(ctx, dev, target, strings.Join(opts, ","))
}

// detachUnused detaches dev when no mount uses it any more.
func (s *node) detachUnused(ctx context.Context, dev string) {
	mounts, err := host.Mounts()
	if err != nil {
		s.d.Log.Warn("loop device kept", "device", dev, "err", err)
		return
	}
	if users := host.Users(mounts, dev); len(users) > 0 {
		return
	}
	if err := host.DetachLoop(ctx, dev); err != nil {
		s.d.Log.Warn("loop device kept", "device", dev, "err", err)
	}
}

// NodeUnpublishVolume unmounts the target, removes it and detaches the loop device once no
// other target uses it. A target that is not mounted, or a volume that is gone, is done.
func (s *node) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if req.GetVolumeId() == "" || target == "" {
		return nil, invalid("volume id and target path are required")
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	for range 2 { // a target mounted twice (a repeated publish that raced) is unmounted twice
		mounts, err := host.Mounts()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if !host.MountedAt(mounts, target) {
			break
		}
		if err := host.Unmount(ctx, target); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "removing target %s: %v", target, err)
	}
	v, err := s.d.Store.Lookup(req.GetVolumeId())
	if errors.Is(err, volume.ErrNotFound) {
		return &csi.NodeUnpublishVolumeResponse{}, nil
	}
	if err != nil {
		return nil, statusOf(err)
	}
	dev, err := host.LoopFor(v.Path)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if dev != "" {
		s.detachUnused(ctx, dev)
	}
	s.d.Log.Info("volume unpublished", "volume", v.ID, "target", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// NodeExpandVolume makes the loop device take the file's new size and grows a Filesystem
// volume's ext4 while it is mounted (resize2fs online).
func (s *node) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetVolumePath() == "" {
		return nil, invalid("volume id and volume path are required")
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	v, err := s.d.Store.Lookup(req.GetVolumeId())
	if err != nil {
		return nil, statusOf(err)
	}
	dev, err := host.LoopFor(v.Path)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if dev == "" {
		return nil, status.Errorf(codes.NotFound, "volume %s is not published on this node", v.ID)
	}
	if err := host.RefreshLoop(ctx, dev); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v.Kind == volume.Filesystem {
		fsBytes, err := host.Ext4Bytes(ctx, dev)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if fsBytes < v.Size {
			if err := host.GrowExt4Online(ctx, dev); err != nil {
				return nil, status.Errorf(codes.Internal, "growing ext4 on %s online (needs CAP_SYS_RESOURCE; "+
					"without it the next publish grows it offline): %v", dev, err)
			}
			s.d.Log.Info("ext4 grown online", "volume", v.ID, "device", dev, "from", fsBytes, "to", v.Size)
		}
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: v.Size}, nil
}
