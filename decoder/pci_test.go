package decoder

import (
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

const pciIDs = `# comment
8086  Intel Corporation
	1237  440FX - 82441FX PMC [Natoma]
		1af4 1100  Qemu virtual machine
1af4  Red Hat, Inc.
	1000  Virtio network device
C 01  Mass storage controller
	06  SATA controller
		01  AHCI 1.0
C 02  Network controller
	00  Ethernet controller
`

func pciTestEnv(t *testing.T) *Env {
	db, err := ParsePCIDB(stringsReader(pciIDs))
	if err != nil {
		t.Fatal(err)
	}
	return &Env{PCI: db}
}

func TestPCIVendor(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "pci_vendor"}, pciTestEnv(t), []decodeCase{
		{name: "intel", in: []byte("32902"), want: "Intel Corporation"},
		{name: "unknown", in: []byte("4660"), want: "unknown pci vendor: 0x1234"},
	})
	runDecodeCases(t, config.Decoder{Name: "pci_vendor"}, &Env{}, []decodeCase{
		{name: "no database", in: []byte("32902"), want: "0x8086"},
	})
}

func TestPCIDevice(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "pci_device"}, pciTestEnv(t), []decodeCase{
		{name: "virtio", in: []byte("452202496"), want: "Virtio network device"}, // 0x1af41000
		{name: "unknown", in: []byte("452202497"), want: "unknown pci device: 0x1af41001"},
	})
}

func TestPCIClass(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "pci_class"}, pciTestEnv(t), []decodeCase{
		{name: "storage", in: []byte("1"), want: "Mass storage controller"},
		{name: "unknown", in: []byte("255"), want: "unknown pci class: 0xff"},
	})
}

func TestPCISubclass(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "pci_subclass"}, pciTestEnv(t), []decodeCase{
		{name: "sata", in: []byte("262"), want: "SATA controller"}, // 0x0106
		{name: "ethernet", in: []byte("512"), want: "Ethernet controller"},
		{name: "unknown", in: []byte("263"), want: "unknown pci subclass: 0x0107"},
	})
}

func TestLoadPCIDB(t *testing.T) {
	if _, err := LoadPCIDB("/nonexistent/pci.ids"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing pci.ids: %v", err)
	}
	db, err := LoadPCIDB()
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("pci.ids is not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	if db.Vendors[0x8086] != "Intel Corporation" {
		t.Fatalf("vendor 8086 = %q", db.Vendors[0x8086])
	}
}
