package nats_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/sinks"
	bnats "github.com/exportbridge/exportbridge/sinks/nats"
)

// checkNew runs New and either a delivery (wantErr empty) or the error checks.
func checkNew(t *testing.T, o bnats.Options, wantErr []string, secrets ...string) {
	t.Helper()
	logs := &syncBuffer{}
	o.Logger = newLogger(logs)
	o.ConnectTimeout = 3 * time.Second
	s, err := bnats.NewSink(context.Background(), o)
	if len(wantErr) == 0 {
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer s.Close()
		if err := s.Deliver(context.Background(), ev("u", "ready", "x", 1)); err != nil {
			t.Errorf("Deliver: %v", err)
		}
	} else {
		if err == nil {
			_ = s.Close()
			t.Fatalf("New succeeded, want an error containing %q", wantErr)
		}
		if !sinks.IsPermanent(err) {
			t.Errorf("error is not permanent: %v", err)
		}
		for _, want := range wantErr {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	}
	for _, secret := range secrets {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error reveals a secret: %v", err)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs reveal a secret:\n%s", logs)
		}
	}
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNKeyAuth(t *testing.T) {
	dir := t.TempDir()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	srv := startServer(t, natsembed.Options{NKeys: []string{pub}})
	url := []string{srv.ClientURL()}

	t.Run("ok", func(t *testing.T) {
		checkNew(t, bnats.Options{URLs: url, NKeyFile: writeFile(t, dir, "user.nk", seed)}, nil, string(seed))
	})
	t.Run("unknown key", func(t *testing.T) {
		checkNew(t, bnats.Options{URLs: url, NKeyFile: writeFile(t, dir, "other.nk", otherSeed)},
			[]string{"authorization failed for nats://127.0.0.1:", "nats.nkey"}, string(otherSeed))
	})
	t.Run("account seed instead of user seed", func(t *testing.T) {
		acc, _ := nkeys.CreateAccount()
		accSeed, _ := acc.Seed()
		checkNew(t, bnats.Options{URLs: url, NKeyFile: writeFile(t, dir, "acc.nk", accSeed)},
			[]string{"nats.nkey", "expected an NKey user seed"}, string(accSeed))
	})
}

// TestCredsAuth runs a server in operator (JWT) mode and connects with a .creds file.
func TestCredsAuth(t *testing.T) {
	dir := t.TempDir()
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	accJWT, err := jwt.NewAccountClaims(accPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	creds := func(signer nkeys.KeyPair) ([]byte, []byte) {
		u, _ := nkeys.CreateUser()
		uPub, _ := u.PublicKey()
		uSeed, _ := u.Seed()
		uJWT, err := jwt.NewUserClaims(uPub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		b, err := jwt.FormatUserConfig(uJWT, uSeed)
		if err != nil {
			t.Fatal(err)
		}
		return b, uSeed
	}
	srv := startServer(t, natsembed.Options{Configure: func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{opClaims}
		o.AccountResolver = resolver
	}})
	url := []string{srv.ClientURL()}

	t.Run("ok", func(t *testing.T) {
		b, seed := creds(acc)
		checkNew(t, bnats.Options{URLs: url, CredsFile: writeFile(t, dir, "ok.creds", b)}, nil, string(seed))
	})
	t.Run("user of an unknown account", func(t *testing.T) {
		stranger, _ := nkeys.CreateAccount()
		b, seed := creds(stranger)
		checkNew(t, bnats.Options{URLs: url, CredsFile: writeFile(t, dir, "stranger.creds", b)},
			[]string{"authorization failed", "nats.creds"}, string(seed))
	})
	t.Run("not a creds file", func(t *testing.T) {
		checkNew(t, bnats.Options{URLs: url, CredsFile: writeFile(t, dir, "junk.creds", []byte("SUAJUNK not a creds file"))},
			[]string{"nats.creds"}, "SUAJUNK")
	})
}

type pki struct {
	caFile, certFile, keyFile string
	server                    *tls.Config
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) (tls.Certificate, []byte, []byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(k)
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c, certPEM, keyPEM
	}
	srvCert, _, _ := leaf(2, x509.ExtKeyUsageServerAuth)
	_, cliCert, cliKey := leaf(3, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pki{
		caFile:   writeFile(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		certFile: writeFile(t, dir, "client.pem", cliCert),
		keyFile:  writeFile(t, dir, "client-key.pem", cliKey),
		server: &tls.Config{
			Certificates: []tls.Certificate{srvCert}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		},
	}
}

func TestTLS(t *testing.T) {
	p := newPKI(t)
	mtls := startServer(t, natsembed.Options{Configure: func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, p.server, 5
	}})
	plain := startServer(t, natsembed.Options{})
	tlsURL := strings.Replace(mtls.ClientURL(), "nats://", "tls://", 1)
	tests := []struct {
		name    string
		o       bnats.Options
		wantErr []string
	}{
		{"CA and client certificate", bnats.Options{URLs: []string{tlsURL}, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile}, nil},
		{"nats scheme upgraded by the server", bnats.Options{URLs: []string{mtls.ClientURL()}, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile}, nil},
		{"no CA", bnats.Options{URLs: []string{tlsURL}, CertFile: p.certFile, KeyFile: p.keyFile},
			[]string{"cannot verify the server certificate", "nats.ca"}},
		{"no client certificate", bnats.Options{URLs: []string{tlsURL}, CAFile: p.caFile},
			[]string{"refused the handshake", "nats.cert/nats.key"}},
		{"TLS settings against a plain server", bnats.Options{URLs: []string{plain.ClientURL()}, CAFile: p.caFile},
			[]string{"does not offer it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkNew(t, tc.o, tc.wantErr)
		})
	}
}
