package driver

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-vm/berth/ci/cluster/csi/internal/host"
	"github.com/berth-vm/berth/ci/cluster/csi/internal/volume"
)

type controller struct {
	csi.UnimplementedControllerServer
	d *Driver
}

func (s *controller) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// CreateVolume: the volume's name is its id, so a repeated call finds the volume it made.
func (s *controller) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if err := volume.ValidID(req.GetName()); err != nil {
		return nil, invalid("%v", err)
	}
	kind, err := kindOfAll(req.GetVolumeCapabilities())
	if err != nil {
		return nil, invalid("%v", err)
	}
	if req.GetVolumeContentSource() != nil {
		return nil, invalid("volume content source: this driver makes empty volumes only (no snapshots, no clones)")
	}
	r := req.GetCapacityRange()
	size, err := volume.Size(r.GetRequiredBytes(), r.GetLimitBytes())
	if err != nil {
		return nil, statusOf(err)
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	v, err := s.d.Store.Create(ctx, req.GetName(), kind, size, r.GetLimitBytes())
	if err != nil {
		return nil, statusOf(err)
	}
	s.d.Log.Info("volume ready", "volume", v.ID, "kind", v.Kind, "bytes", v.Size)
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{VolumeId: v.ID, CapacityBytes: v.Size}}, nil
}

// DeleteVolume refuses a volume still attached to a loop device (published somewhere).
func (s *controller) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume id missing")
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	v, err := s.d.Store.Lookup(req.GetVolumeId())
	if errors.Is(err, volume.ErrNotFound) {
		return &csi.DeleteVolumeResponse{}, nil
	}
	if err != nil {
		return nil, statusOf(err)
	}
	dev, err := host.LoopFor(v.Path)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if dev != "" {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still attached to %s", v.ID, dev)
	}
	if err := s.d.Store.Delete(v.ID); err != nil {
		return nil, statusOf(err)
	}
	s.d.Log.Info("volume deleted", "volume", v.ID)
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerExpandVolume grows the file; the node then refreshes the loop device and, for a
// Filesystem volume, grows ext4 (NodeExpandVolume).
func (s *controller) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume id missing")
	}
	r := req.GetCapacityRange()
	if r.GetRequiredBytes() == 0 {
		return nil, invalid("capacity range: required bytes missing")
	}
	size, err := volume.Size(r.GetRequiredBytes(), r.GetLimitBytes())
	if err != nil {
		return nil, statusOf(err)
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	v, err := s.d.Store.Grow(req.GetVolumeId(), size)
	if err != nil {
		return nil, statusOf(err)
	}
	s.d.Log.Info("volume grown", "volume", v.ID, "bytes", v.Size)
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: v.Size, NodeExpansionRequired: true}, nil
}

func (s *controller) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume id missing")
	}
	v, err := s.d.Store.Lookup(req.GetVolumeId())
	if err != nil {
		return nil, statusOf(err)
	}
	kind, err := kindOfAll(req.GetVolumeCapabilities())
	if err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	if kind != v.Kind {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: "volume " + v.ID + " is " + string(v.Kind)}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeCapabilities: req.GetVolumeCapabilities()}}, nil
}
