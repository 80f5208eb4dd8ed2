package bridgetest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/exportbridge/exportbridge/natsembed"
)

// StartCluster runs an n-node JetStream cluster on loopback: in-process servers named
// n0, n1, … with routes between them, each with its own store directory. It returns
// the servers and their client URLs; they are shut down at the end of the test. A fresh
// cluster needs a few seconds to elect its JetStream meta leader.
func StartCluster(t testing.TB, n int) ([]*natsserver.Server, []string) {
	t.Helper()
	routes := make([]string, n)
	for i := range routes {
		routes[i] = "nats://" + FreeAddr(t)
	}
	srvs := make([]*natsserver.Server, n)
	urls := make([]string, n)
	for i := range srvs {
		_, p, _ := net.SplitHostPort(strings.TrimPrefix(routes[i], "nats://"))
		port, _ := strconv.Atoi(p)
		s, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: t.TempDir(), Configure: func(o *natsserver.Options) {
			o.ServerName = fmt.Sprintf("n%d", i)
			o.Cluster = natsserver.ClusterOpts{Name: "exportbridge-test", Host: "127.0.0.1", Port: port}
			o.Routes = natsserver.RoutesFromStr(strings.Join(routes, ","))
		}})
		if err != nil {
			t.Fatal(err)
		}
		srvs[i], urls[i] = s, s.ClientURL()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	}
	return srvs, urls
}
