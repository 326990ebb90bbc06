package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// SelfSignedCert is a self-signed server certificate for loopback
// (127.0.0.1, ::1, localhost and the names given), written to files.
// CertFile doubles as the CA file that makes clients trust it.
type SelfSignedCert struct {
	CertFile string // PEM certificate (also the CA bundle to trust it)
	KeyFile  string // PEM private key
	Cert     *x509.Certificate
	Pool     *x509.CertPool // a pool holding only this certificate
}

// NewSelfSignedCert writes a fresh self-signed certificate and key to dir
// (a temp dir when empty), valid for names besides the loopback addresses,
// expiring at notAfter (a year from now when zero).
func NewSelfSignedCert(t testing.TB, dir string, notAfter time.Time, names ...string) *SelfSignedCert {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if notAfter.IsZero() {
		notAfter = time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: generate key: %v", err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "imagepull_exporter test registry"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              append([]string{"localhost"}, names...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testenv: create certificate: %v", err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: marshal key: %v", err)
	}
	c := &SelfSignedCert{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Cert: cert, Pool: x509.NewCertPool()}
	c.Pool.AddCert(cert)
	writePEM(t, c.CertFile, "CERTIFICATE", der)
	writePEM(t, c.KeyFile, "EC PRIVATE KEY", keyDER)
	return c
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("testenv: write %s: %v", path, err)
	}
}
