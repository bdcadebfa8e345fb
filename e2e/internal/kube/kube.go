// Package kube is the e2e tests' one way to the cluster: a client-go
// clientset and its REST config from a kubeconfig, and what the tests do with
// pods through them (status, waits, exec, logs, port-forward, diagnostics).
package kube

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is a connection to one cluster: the clientset for the API and the
// REST config that exec and port-forward upgrade their connections with.
type Cluster struct {
	Config *rest.Config
	Client *kubernetes.Clientset
}

// Connect reads the kubeconfig at path.
func Connect(path string) (*Cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clientset from %s: %w", path, err)
	}
	return &Cluster{Config: cfg, Client: cs}, nil
}

// Client builds a clientset from the kubeconfig at path.
func Client(path string) (*kubernetes.Clientset, error) {
	c, err := Connect(path)
	if err != nil {
		return nil, err
	}
	return c.Client, nil
}
