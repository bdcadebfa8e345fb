package host

import "context"

// MountExt4 mounts the ext4 filesystem on dev at point (options: mount -o, may be empty).
func MountExt4(ctx context.Context, dev, point, options string) error {
	args := []string{"-t", "ext4"}
	if options != "" {
		args = append(args, "-o", options)
	}
	_, err := Run(ctx, "mount", append(args, dev, point)...)
	return err
}

// BindDevice bind-mounts the device node dev onto the file point.
func BindDevice(ctx context.Context, dev, point string) error {
	_, err := Run(ctx, "mount", "--bind", dev, point)
	return err
}

// Unmount unmounts point.
func Unmount(ctx context.Context, point string) error {
	_, err := Run(ctx, "umount", point)
	return err
}
