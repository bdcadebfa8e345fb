package driver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/berth-vm/berth/ci/cluster/csi/internal/host"
	"github.com/berth-vm/berth/ci/cluster/csi/internal/volume"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BERTH_REQUIRE_ROOT") == "1" {
		t.Fatal("needs root (loop devices, mount); BERTH_REQUIRE_ROOT=1")
	}
	t.Skip("needs root (loop devices, mount)")
}

// hasSysResource reports CAP_SYS_RESOURCE in the effective set: online ext4 growth needs it.
func hasSysResource(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<24) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

type clients struct {
	csi.ControllerClient
	csi.NodeClient
	id csi.IdentityClient
}

// serve runs the driver on a unix socket in a temporary directory, as the sidecars and the
// kubelet reach it, and returns its clients and the volume directory.
func serve(t *testing.T) (clients, string) {
	dir := t.TempDir()
	d := &Driver{Name: "csi.test", Version: "test", NodeID: "node-1",
		Store: volume.Store{Dir: filepath.Join(dir, "volumes")}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s := grpc.NewServer(grpc.UnaryInterceptor(LogCalls(d.Log)))
	d.Register(s)
	sock := filepath.Join(dir, "csi.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{csi.NewControllerClient(conn), csi.NewNodeClient(conn), csi.NewIdentityClient(conn)}, dir
}

func capability(block bool) *csi.VolumeCapability {
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	if block {
		c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}}
	}
	return c
}

func statfs(t *testing.T, path string) syscall.Statfs_t {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func expand(t *testing.T, c clients, id, path string, size int64, block bool) error {
	t.Helper()
	r, err := c.ControllerExpandVolume(context.Background(), &csi.ControllerExpandVolumeRequest{
		VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: size}, VolumeCapability: capability(block)})
	if err != nil {
		t.Fatalf("ControllerExpandVolume: %v", err)
	}
	if r.CapacityBytes != size || !r.NodeExpansionRequired {
		t.Fatalf("ControllerExpandVolume: %v; want %d bytes, node expansion", r, size)
	}
	_, err = c.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{
		VolumeId: id, VolumePath: path, CapacityRange: &csi.CapacityRange{RequiredBytes: size}, VolumeCapability: capability(block)})
	return err
}

func TestIdentity(t *testing.T) {
	c, _ := serve(t)
	caps, err := c.id.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var online bool
	for _, pc := range caps.Capabilities {
		online = online || pc.GetVolumeExpansion().GetType() == csi.PluginCapability_VolumeExpansion_ONLINE
	}
	if !online {
		t.Errorf("plugin capabilities %v: no online volume expansion", caps)
	}
}

func TestCreateRefuses(t *testing.T) {
	c, _ := serve(t)
	multi := capability(false)
	multi.AccessMode.Mode = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	xfs := capability(false)
	xfs.GetMount().FsType = "xfs"
	for name, req := range map[string]*csi.CreateVolumeRequest{
		"no name":       {VolumeCapabilities: []*csi.VolumeCapability{capability(false)}},
		"bad name":      {Name: "../x", VolumeCapabilities: []*csi.VolumeCapability{capability(false)}},
		"no capability": {Name: "pvc-1"},
		"multi-node":    {Name: "pvc-1", VolumeCapabilities: []*csi.VolumeCapability{multi}},
		"xfs":           {Name: "pvc-1", VolumeCapabilities: []*csi.VolumeCapability{xfs}},
		"mixed":         {Name: "pvc-1", VolumeCapabilities: []*csi.VolumeCapability{capability(false), capability(true)}},
	} {
		if _, err := c.CreateVolume(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}

// TestFilesystemVolume: a real ext4 volume is created, published root-owned 0755 with
// lost+found and reserved blocks, grown (online where the kernel lets us, else at the next
// publish), and leaves no mount or loop device behind.
func TestFilesystemVolume(t *testing.T) {
	needRoot(t)
	c, dir := serve(t)
	ctx := context.Background()
	const id = "pvc-fs"
	create := &csi.CreateVolumeRequest{Name: id, VolumeCapabilities: []*csi.VolumeCapability{capability(false)},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 * volume.MiB}}
	v, err := c.CreateVolume(ctx, create)
	if err != nil {
		t.Fatal(err)
	}
	if v.Volume.VolumeId != id || v.Volume.CapacityBytes != 64*volume.MiB {
		t.Fatalf("CreateVolume: %v", v)
	}
	if again, err := c.CreateVolume(ctx, create); err != nil || again.Volume.VolumeId != id {
		t.Fatalf("repeated CreateVolume: %v, %v", again, err)
	}
	target := filepath.Join(dir, "pods", "uid", "mount")
	publish := &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: capability(false)}
	t.Cleanup(func() {
		_, _ = c.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	})
	for range 2 { // the second is a repeated call: nothing to do
		if _, err := c.NodePublishVolume(ctx, publish); err != nil {
			t.Fatal(err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(target, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 || st.Mode&0o7777 != 0o755 {
		t.Errorf("volume root: uid %d gid %d mode %o; want root-owned 0755 (mkfs.ext4's defaults)", st.Uid, st.Gid, st.Mode&0o7777)
	}
	if _, err := os.Stat(filepath.Join(target, "lost+found")); err != nil {
		t.Errorf("no lost+found: %v", err)
	}
	before := statfs(t, target)
	if before.Bavail >= before.Bfree {
		t.Errorf("statfs: available %d >= free %d blocks: no blocks reserved for root", before.Bavail, before.Bfree)
	}
	if err := os.WriteFile(filepath.Join(target, "kept"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}

	err = expand(t, c, id, target, 128*volume.MiB, false)
	if hasSysResource(t) {
		if err != nil {
			t.Fatalf("NodeExpandVolume with CAP_SYS_RESOURCE: %v", err)
		}
	} else {
		if err == nil || !strings.Contains(err.Error(), "CAP_SYS_RESOURCE") {
			t.Fatalf("NodeExpandVolume without CAP_SYS_RESOURCE: %v; want the error naming it", err)
		}
		t.Log("no CAP_SYS_RESOURCE here: ext4 grows at the next publish")
		if _, err := c.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.NodePublishVolume(ctx, publish); err != nil {
			t.Fatal(err)
		}
	}
	after := statfs(t, target)
	if grown := int64(after.Blocks-before.Blocks) * after.Bsize; grown < 56*volume.MiB {
		t.Errorf("after growing by 64 MiB the filesystem has %d bytes more", grown)
	}
	if b, err := os.ReadFile(filepath.Join(target, "kept")); err != nil || string(b) != "data" {
		t.Errorf("file written before growth: %q, %v", b, err)
	}

	if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("DeleteVolume while published: %v, want FailedPrecondition", err)
	}
	for range 2 {
		if _, err := c.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
	}
	assertReleased(t, filepath.Join(dir, "volumes", id+".ext4"), target)
	for range 2 {
		if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBlockVolume: a Block volume is a loop device bind-mounted on the target file; it grows
// while published.
func TestBlockVolume(t *testing.T) {
	needRoot(t)
	c, dir := serve(t)
	ctx := context.Background()
	const id = "pvc-block"
	if _, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: id, VolumeCapabilities: []*csi.VolumeCapability{capability(true)},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 16 * volume.MiB}}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "publish", id, "uid")
	t.Cleanup(func() {
		_, _ = c.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	})
	if _, err := c.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: capability(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: capability(false)}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("publishing a Block volume as Filesystem: %v, want InvalidArgument", err)
	}
	if got := deviceBytes(t, target); got != 16*volume.MiB {
		t.Errorf("device at the target: %d bytes, want %d", got, 16*volume.MiB)
	}
	if err := expand(t, c, id, target, 48*volume.MiB, true); err != nil {
		t.Fatal(err)
	}
	if got := deviceBytes(t, target); got != 48*volume.MiB {
		t.Errorf("device after growth: %d bytes, want %d", got, 48*volume.MiB)
	}
	if _, err := c.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	assertReleased(t, filepath.Join(dir, "volumes", id+".block"), target)
	if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
}

func deviceBytes(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFBLK {
		t.Fatalf("%s is not a block device (mode %o, %v)", path, st.Mode, err)
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// assertReleased: the target is gone, nothing is mounted there, the file has no loop device.
func assertReleased(t *testing.T, file, target string) {
	t.Helper()
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("target %s still there after unpublish: %v", target, err)
	}
	mounts, err := host.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	if host.MountedAt(mounts, target) {
		t.Errorf("%s still mounted", target)
	}
	if dev, err := host.LoopFor(file); err != nil || dev != "" {
		t.Errorf("loop device of %s after unpublish: %q, %v", file, dev, err)
	}
}
