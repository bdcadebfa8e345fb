package localpod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stage"
)

// PodIP and NodeIP are the fixture's addresses (common/roottest).
const (
	PodIP  = roottest.PodIP
	NodeIP = roottest.NodeIP
)

// Pod is one local pod: its namespaces, its files under Work and the
// processes it started. Its methods are the pod's life: Stages (the init
// containers, then dnsmasq and vmm), WaitSSH, StopVMM, StartVMM, Close.
type Pod struct {
	Config
	Work       string // every file of this pod (removed by Close)
	NodeNS     string // the node's network namespace (NodeIP on lo, the image server)
	PodNS      string // the pod's network namespace (Calico-shaped eth0; every stage runs here)
	GuestImage string // the test guest served to image-fetch
	RunDir     string // BERTH_RUN_DIR, the run volume
	ImageDir   string // IMAGE_DIR, the image cache
	DiskDir    string // DISK_DIR, the VM's PVC
	Key        string // the SSH private key whose public half seed-iso gives the guest

	// Blank and CDROMs: a pod that installs its OS from an ISO: DISK_BLANK
	// for image-fetch, and CDROMS (a JSON array, "" for none) for image-fetch
	// and vmm. Set between starts, as helm upgrade changes the chart's values.
	Blank  bool
	CDROMs string

	VMM     *Proc // the vm container (nil before the first StartVMM)
	Dnsmasq *Proc // the dnsmasq sidecar
	HTTP    *Proc // the node's image server

	Timings []Timing // phase timings, in order: printed, never asserted
	// QEMUCPU is QEMU's CPU time (user+sys) when the guest first answered SSH (WaitSSH), for the
	// boot bench: the shared machine's load disturbs it far less than wall time.
	QEMUCPU time.Duration
	logf    func(format string, args ...any)
}

// Timing is how long one phase took.
type Timing struct {
	Phase string
	D     time.Duration
}

// Start checks what the pod needs (root, the binaries), builds or reuses the
// test guest, makes the namespaces and the pod's files, and starts the node's
// image server, waiting until the pod reaches it. Nothing of the pod runs yet.
// On error everything made is removed again.
func Start(ctx context.Context, c Config, logf func(format string, args ...any)) (p *Pod, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("run as root (network namespaces)")
	}
	for _, b := range []string{"net-setup", "image-fetch", "seed-iso", "vmm"} {
		if _, err := os.Stat(filepath.Join(c.Bin, b)); err != nil {
			return nil, fmt.Errorf("%s missing: run make build", filepath.Join(c.Bin, b))
		}
	}
	p = &Pod{Config: c, logf: logf}
	out, err := exec.CommandContext(ctx, filepath.Join(c.Repo, "ci/testguest/build.sh")).Output()
	if err != nil {
		return nil, fmt.Errorf("ci/testguest/build.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	p.GuestImage = lines[len(lines)-1]
	if _, err := os.Stat(p.GuestImage); err != nil {
		return nil, fmt.Errorf("ci/testguest/build.sh printed no image: %w", err)
	}
	if p.Work, err = os.MkdirTemp("/var/tmp", "berth-local-pod."); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.Close()
			p = nil
		}
	}()
	if err := os.Chmod(p.Work, 0o755); err != nil { // the stages that run as VMUID reach their dirs through it
		return nil, err
	}
	t := time.Now()
	// Close deletes both namespaces by name, not with roottest's del funcs: the pod of `up` is taken
	// down by another process.
	if p.NodeNS, _, err = roottest.NewNode(); err != nil {
		return nil, fmt.Errorf("node netns: %w", err)
	}
	if p.PodNS, _, _, err = roottest.NewCalicoPod(p.NodeNS); err != nil {
		return nil, fmt.Errorf("pod netns: %w", err)
	}
	p.timing("netns", t)
	if err := p.makeFiles(); err != nil {
		return nil, fmt.Errorf("the pod's files: %w", err)
	}
	p.HTTP, err = p.start(filepath.Join(p.Work, "http.log"), p.NodeNS, nil,
		"python3", "-m", "http.server", "--bind", NodeIP, "--directory", filepath.Join(p.Work, "www"), strconv.Itoa(c.HTTPPort))
	if err != nil {
		return nil, fmt.Errorf("the node's image server: %w", err)
	}
	// From the pod netns: this proves the Calico-shaped path (proxy ARP for 169.254.1.1) too.
	url := p.ImageURL()
	if err := Poll(ctx, 15*time.Second, "the pod reaches the node's image server at "+url, func() error {
		return exec.CommandContext(ctx, "ip", "netns", "exec", p.PodNS, "curl", "-sfI", "-m", "2", url).Run()
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// ImageURL is IMG_SOURCE: the test guest on the node's image server.
func (p *Pod) ImageURL() string {
	return fmt.Sprintf("http://%s:%d/testguest.qcow2", NodeIP, p.HTTPPort)
}

// makeFiles writes the pod's files: resolv.conf, user-data (a runcmd that
// leaves a marker), meta-data, an SSH key, and the guest image to serve.
func (p *Pod) makeFiles() error {
	p.RunDir, p.ImageDir, p.DiskDir = filepath.Join(p.Work, "run"), filepath.Join(p.Work, "images"), filepath.Join(p.Work, "disk")
	cfg := filepath.Join(p.Work, "config")
	for _, d := range []string{p.RunDir, p.ImageDir, p.DiskDir, filepath.Join(p.Work, "www"), cfg} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	var resolv strings.Builder
	for _, n := range Nameservers {
		fmt.Fprintf(&resolv, "nameserver %s\n", n)
	}
	fmt.Fprintf(&resolv, "search %s\noptions ndots:5\n", strings.Join(Search, " "))
	userData := "#cloud-config\nruncmd:\n  - [ sh, -c, 'echo berth-runcmd-ok > /var/lib/berth-marker' ]\n"
	if len(p.HostKeyTypes) > 0 {
		userData += "ssh_genkeytypes: [" + strings.Join(p.HostKeyTypes, ", ") + "]\n"
	}
	files := map[string]string{
		"resolv.conf": resolv.String(),
		"user-data":   userData,
		"meta-data":   "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(cfg, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	p.Key = filepath.Join(p.Work, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", p.Key, "-C", "berth-local-pod").CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	if err := os.Symlink(p.GuestImage, filepath.Join(p.Work, "www/testguest.qcow2")); err != nil {
		return err
	}
	for _, d := range []string{p.RunDir, p.ImageDir, p.DiskDir} {
		if err := os.Chown(d, p.VMUID, p.VMUID); err != nil {
			return err
		}
	}
	return nil
}

// Stages runs the pod's start in the pod's order: the init stages, dnsmasq
// when it is not running, then vmm, whose output (the guest console) goes to
// console-TAG.log.
func (p *Pod) Stages(ctx context.Context, tag string) error {
	t0 := time.Now()
	if err := p.InitStages(ctx, tag); err != nil {
		return err
	}
	if p.Dnsmasq == nil || p.Dnsmasq.Exited() {
		if err := p.startDnsmasq(); err != nil {
			return err
		}
	}
	if err := p.StartVMM(tag); err != nil {
		return err
	}
	p.timing(tag+"/stages-to-vmm-start", t0)
	return nil
}

// InitStages runs the pod's init containers in order: net-setup, image-fetch
// and seed-iso; each must exit 0, and their files must be there after them.
func (p *Pod) InitStages(ctx context.Context, tag string) error {
	for _, s := range []struct {
		name string
		env  []string
		asVM bool
	}{
		{"net-setup", []string{"RESOLV_CONF=" + p.Work + "/config/resolv.conf",
			"TAP_UID=" + strconv.Itoa(p.VMUID), "TAP_GID=" + strconv.Itoa(p.VMUID)}, false},
		{"image-fetch", p.imageFetchEnv(), true},
		{"seed-iso", p.seedISOEnv(), true},
	} {
		t := time.Now()
		if err := p.runStage(ctx, s.name, s.asVM, s.env...); err != nil {
			return err
		}
		p.timing(tag+"/"+s.name, t)
	}
	for _, f := range []string{filepath.Join(p.RunDir, stage.DnsmasqConfName), filepath.Join(p.RunDir, stage.SeedISOName), p.Overlay()} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("after the init stages: %w", err)
		}
	}
	return nil
}

// Overlay is the VM's pet disk that image-fetch makes on the PVC.
func (p *Pod) Overlay() string { return filepath.Join(p.DiskDir, p.VMName+".qcow2") }

func (p *Pod) imageFetchEnv() []string {
	env := []string{"IMG_SOURCE=" + p.ImageURL(), "IMAGE_DIR=" + p.ImageDir, "DISK_DIR=" + p.DiskDir}
	if p.Blank {
		env = []string{"DISK_BLANK=true", "IMAGE_DIR=" + p.ImageDir, "DISK_DIR=" + p.DiskDir}
	}
	if p.CDROMs != "" {
		env = append(env, "CDROMS="+p.CDROMs)
	}
	if p.DiskSize != "" {
		env = append(env, "DISK_SIZE="+p.DiskSize)
	}
	return env
}

// Serve puts the file at path on the node's image server as name and
// returns its URL.
func (p *Pod) Serve(name, path string) (string, error) {
	if err := os.Symlink(path, filepath.Join(p.Work, "www", name)); err != nil {
		return "", err
	}
	return fmt.Sprintf("http://%s:%d/%s", NodeIP, p.HTTPPort, name), nil
}

// Gets is how many times the node's image server served the file name.
func (p *Pod) Gets(name string) int {
	b, _ := os.ReadFile(filepath.Join(p.Work, "http.log"))
	return strings.Count(string(b), "GET /"+name+" ")
}

func (p *Pod) seedISOEnv() []string {
	pub, err := os.ReadFile(p.Key + ".pub")
	if err != nil {
		pub = nil // seed-iso then has no key, and SSH fails with its own message
	}
	return []string{"USERDATA=" + p.Work + "/config/user-data", "METADATA=" + p.Work + "/config/meta-data",
		"SSH_AUTHORIZED_KEYS=" + strings.TrimSpace(string(pub))}
}

// vmmEnv is the vm container's environment.
func (p *Pod) vmmEnv() []string {
	env := []string{"DISK_DIR=" + p.DiskDir, "IMAGE_DIR=" + p.ImageDir, "ACCEL=tcg", "VM_CPUS=" + p.VMCPUs,
		"VM_MEMORY=" + p.VMMemory, "SHUTDOWN_TIMEOUT=" + strconv.Itoa(int(p.ShutdownTimeout/time.Second)), "READY_TCP_PORT=22"}
	if p.CDROMs != "" {
		env = append(env, "CDROMS="+p.CDROMs)
	}
	return env
}

// containerArgs is the command line that runs bin/NAME in the pod netns as
// the pod runs it: env -i (nothing of this process leaks in), the pod's
// variables, and as VMUID for the non-root containers.
func (p *Pod) containerArgs(name string, asVM bool, env []string, args ...string) []string {
	cmd := []string{"ip", "netns", "exec", p.PodNS}
	if asVM {
		id := strconv.Itoa(p.VMUID)
		cmd = append(cmd, "setpriv", "--reuid="+id, "--regid="+id, "--clear-groups")
	}
	cmd = append(cmd, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "VM_NAME="+p.VMName, "BERTH_RUN_DIR="+p.RunDir)
	cmd = append(cmd, env...)
	return append(append(cmd, filepath.Join(p.Bin, name)), args...)
}

// runStage runs an init stage to its end; its output is appended to NAME.log.
func (p *Pod) runStage(ctx context.Context, name string, asVM bool, env ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	logPath := filepath.Join(p.Work, name+".log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	args := p.containerArgs(name, asVM, env)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w; its log ends:\n%s", name, err, Tail(logPath, 20))
	}
	return nil
}

// Probe runs `vmm probe KIND` (ready or live) as the kubelet would, in the vm
// container's environment; the error carries its output.
func (p *Pod) Probe(ctx context.Context, kind string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := p.containerArgs("vmm", true, p.vmmEnv(), "probe", kind)
	if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("vmm probe %s: %w: %s", kind, err, out)
	}
	return nil
}

func (p *Pod) startDnsmasq() (err error) {
	p.Dnsmasq, err = p.start(filepath.Join(p.Work, "dnsmasq.log"), p.PodNS, nil,
		"dnsmasq", "--keep-in-foreground", "--conf-file="+filepath.Join(p.RunDir, stage.DnsmasqConfName))
	if err != nil {
		return fmt.Errorf("dnsmasq: %w", err)
	}
	select {
	case <-p.Dnsmasq.Done:
		return fmt.Errorf("dnsmasq exited at start: %s", Tail(filepath.Join(p.Work, "dnsmasq.log"), 20))
	case <-time.After(300 * time.Millisecond):
		return nil
	}
}

// StopDnsmasq stops the sidecar (SIGTERM, then waits; bounded).
func (p *Pod) StopDnsmasq(ctx context.Context) error {
	if p.Dnsmasq == nil {
		return nil
	}
	_, _, err := p.Dnsmasq.Stop(ctx, 10*time.Second)
	p.Dnsmasq = nil
	return err
}

// StartVMM starts the vm container; its stdout and stderr (the guest's
// serial console, what `kubectl logs -c vm` shows) go to console-TAG.log.
func (p *Pod) StartVMM(tag string) (err error) {
	args := p.containerArgs("vmm", true, p.vmmEnv())
	p.VMM, err = p.start(p.ConsoleLog(tag), "", args)
	if err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	return nil
}

// ConsoleLog is the file that holds the console of the vmm started with tag.
func (p *Pod) ConsoleLog(tag string) string { return filepath.Join(p.Work, "console-"+tag+".log") }

// start starts a long-running process in its own session, its output in
// logPath: argv run as it is, or cmd... in the namespace ns.
func (p *Pod) start(logPath, ns string, argv []string, cmd ...string) (*Proc, error) {
	if argv == nil {
		argv = append([]string{"ip", "netns", "exec", ns}, cmd...)
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdout, c.Stderr = log, log
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // a pod of `up` outlives this process
	if err := c.Start(); err != nil {
		return nil, err
	}
	pr := &Proc{Pid: c.Process.Pid, Done: make(chan struct{})}
	go func() {
		err := c.Wait()
		pr.Code = c.ProcessState.ExitCode()
		pr.Err = err
		close(pr.Done)
	}()
	return pr, nil
}

// WaitSSH waits until the guest answers SSH at the pod IP (bounded by
// BootTimeout), failing at once when vmm exits first.
func (p *Pod) WaitSSH(ctx context.Context, tag string) error {
	t := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.BootTimeout)
	defer cancel()
	for {
		if _, err := p.SSH(ctx, "true"); err == nil {
			break
		}
		select {
		case <-p.VMM.Done:
			return fmt.Errorf("vmm exited (%d) before the guest answered SSH; the console ends:\n%s", p.VMM.Code, Tail(p.ConsoleLog(tag), 30))
		case <-ctx.Done():
			return fmt.Errorf("no SSH at %s:22 within %s; the console ends:\n%s", PodIP, p.BootTimeout, Tail(p.ConsoleLog(tag), 30))
		case <-time.After(time.Second):
		}
	}
	p.timing(tag+"/boot-to-ssh", t)
	if pid := p.QEMUPid(); pid != 0 {
		p.QEMUCPU, _ = CPUTime(pid)
	}
	return nil
}

// sshOpts are the client's options: a throwaway guest, never a prompt; 30 s for the connection
// and the banner (a TCG guest on a loaded machine sends its banner late).
var sshOpts = []string{"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
	"-o", "ConnectTimeout=30", "-o", "BatchMode=yes"}

// SSH runs cmd in the guest from the node netns (to the pod IP, with the
// seed's key; 60 s at most) and returns its stdout, trimmed.
func (p *Pod) SSH(ctx context.Context, cmd string) (string, error) {
	return p.SSHWithin(ctx, 60*time.Second, cmd)
}

// SSHWithin is SSH with its own bound, for a command that waits in the guest.
func (p *Pod) SSHWithin(ctx context.Context, limit time.Duration, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	args := append([]string{"netns", "exec", p.NodeNS, "ssh", "-i", p.Key}, sshOpts...)
	c := exec.CommandContext(ctx, "ip", append(args, "debian@"+PodIP, cmd)...)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("ssh %q: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// SSHCommand is the command line a person runs to log in to the guest.
func (p *Pod) SSHCommand() string {
	return fmt.Sprintf("ip netns exec %s ssh -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null debian@%s", p.NodeNS, p.Key, PodIP)
}

// ImageGets is how many times the node's image server served the image.
func (p *Pod) ImageGets() int { return p.Gets("testguest.qcow2") }

// QEMUPid is the pid of vmm's qemu-system child (0 when there is none).
func (p *Pod) QEMUPid() int {
	if p.VMM == nil {
		return 0
	}
	out, err := exec.Command("pgrep", "-P", strconv.Itoa(p.VMM.Pid), "-f", "qemu-system").Output()
	if err != nil {
		return 0
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

// Close kills everything running in the pod's two namespaces (only what this
// pod started lives there: SIGTERM, 5 s, then SIGKILL), deletes them and
// removes Work (unless KEEP_WORK=1). Safe to call twice.
func (p *Pod) Close() {
	TearDown(p.Work, p.PodNS, p.NodeNS)
	p.PodNS, p.NodeNS, p.Work = "", "", ""
}

// TearDown is Close by name, for a pod that another process started.
func TearDown(work string, namespaces ...string) {
	var nss []string
	for _, ns := range namespaces {
		if ns != "" {
			nss = append(nss, ns)
		}
	}
	signalNetns(nss, syscall.SIGTERM)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && len(netnsPids(nss)) > 0; {
		time.Sleep(100 * time.Millisecond)
	}
	for _, ns := range nss {
		roottest.KillNetnsProcesses(ns)
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	if work != "" && os.Getenv("KEEP_WORK") != "1" {
		_ = os.RemoveAll(work)
	}
}

func netnsPids(nss []string) []int {
	var pids []int
	for _, ns := range nss {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func signalNetns(nss []string, sig syscall.Signal) {
	for _, pid := range netnsPids(nss) {
		_ = syscall.Kill(pid, sig)
	}
}

func (p *Pod) timing(phase string, since time.Time) {
	d := time.Since(since)
	p.Timings = append(p.Timings, Timing{phase, d})
	if p.logf != nil {
		p.logf("phase %s: %.2fs", phase, d.Seconds())
	}
}

// PrintTimings writes the phase table (phase <TAB> seconds).
func (p *Pod) PrintTimings(w io.Writer) {
	fmt.Fprintf(w, "phase\tseconds\n")
	for _, t := range p.Timings {
		fmt.Fprintf(w, "%s\t%.2f\n", t.Phase, t.D.Seconds())
	}
}

// Proc is a process the pod started.
type Proc struct {
	Pid  int
	Done chan struct{} // closed when it has exited
	Code int           // its exit code (-1: killed by a signal), once Done
	Err  error
}

// Exited reports whether the process has exited.
func (pr *Proc) Exited() bool {
	select {
	case <-pr.Done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits at most limit for the exit; it returns the
// exit code and how long the exit took.
func (pr *Proc) Stop(ctx context.Context, limit time.Duration) (code int, took time.Duration, err error) {
	t := time.Now()
	_ = syscall.Kill(pr.Pid, syscall.SIGTERM)
	code, err = pr.Wait(ctx, limit)
	return code, time.Since(t), err
}

// Wait waits at most limit for the process to exit and returns its code.
func (pr *Proc) Wait(ctx context.Context, limit time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	select {
	case <-pr.Done:
		return pr.Code, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("pid %d did not exit within %s", pr.Pid, limit)
	}
}

// Poll runs f every second until it succeeds; after limit it fails with what
// and f's last error.
func Poll(ctx context.Context, limit time.Duration, what string, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %s (last: %v)", what, limit, err)
		case <-time.After(time.Second):
		}
	}
}

// Tail is the last n lines of the file at path (for error messages).
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Reattach is the Pod that another process started (`local-pod up`), from
// its work dir and namespaces; it has no Proc of its own (see StopPid).
func Reattach(c Config, work, nodeNS, podNS string) *Pod {
	return &Pod{Config: c, Work: work, NodeNS: nodeNS, PodNS: podNS, Key: filepath.Join(work, "id"),
		RunDir: filepath.Join(work, "run"), ImageDir: filepath.Join(work, "images"), DiskDir: filepath.Join(work, "disk")}
}

// StopPid sends SIGTERM to pid, a process that is not ours, and waits at most
// limit until it is gone.
func StopPid(ctx context.Context, pid int, limit time.Duration) error {
	if pid <= 0 || syscall.Kill(pid, syscall.SIGTERM) != nil {
		return nil // gone already
	}
	return Poll(ctx, limit, fmt.Sprintf("pid %d exits after SIGTERM", pid), func() error {
		if syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("pid %d still runs", pid)
		}
		return nil
	})
}
