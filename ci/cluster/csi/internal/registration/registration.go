// Package registration is the kubelet's plugin registration service for the CSI driver, what
// node-driver-registrar serves elsewhere: the kubelet finds <root-dir>/plugins_registry/<name>-reg.sock,
// asks GetInfo for the driver's name and CSI socket, and reports the outcome.
package registration

import (
	"context"
	"log/slog"

	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Server answers the kubelet for one CSI driver.
type Server struct {
	registerapi.UnimplementedRegistrationServer
	Driver   string // the CSI driver name
	Endpoint string // the driver's CSI socket, as the kubelet will dial it
	Log      *slog.Logger
}

// SocketName is the registration socket's file name in the kubelet's plugins_registry.
func SocketName(driver string) string { return driver + "-reg.sock" }

func (s *Server) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              s.Driver,
		Endpoint:          s.Endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (s *Server) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.GetPluginRegistered() {
		s.Log.Info("registered with the kubelet", "driver", s.Driver)
	} else {
		s.Log.Error("the kubelet refused the registration", "driver", s.Driver, "err", st.GetError())
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
