package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// idmapHashProg counts getppid calls of threads named idmap_* by cgroup,
// split by whether the cgroup is in the hash cgroup_id_map the exporter
// fills (ebpf_exporter's cgroup_id_map example, on a syscall).
const idmapHashProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} idmap_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} hash_matched_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} hash_unmatched_total SEC(".maps");

static void bump(void *map, u64 *key) {
	u64 one = 1, *v = bpf_map_lookup_elem(map, key);
	if (v) __sync_fetch_and_add(v, 1);
	else bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int count(void *ctx) {
	char comm[16];
	bpf_get_current_comm(&comm, sizeof(comm));
	if (comm[0] != 'i' || comm[1] != 'd' || comm[2] != 'm' || comm[3] != 'a' || comm[4] != 'p' || comm[5] != '_')
		return 0;
	u64 id = bpf_get_current_cgroup_id();
	if (bpf_map_lookup_elem(&idmap_hash, &id))
		bump(&hash_matched_total, &id);
	else
		bump(&hash_unmatched_total, &id);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

// idmapStorageProg does the same with a cgrp_storage map, created empty
// (0) for cgroups the exporter did not set to 1.
const idmapStorageProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, u32);
	__type(value, u64);
} idmap_storage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} storage_matched_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} storage_unmatched_total SEC(".maps");

static void bump(void *map, u64 *key) {
	u64 one = 1, *v = bpf_map_lookup_elem(map, key);
	if (v) __sync_fetch_and_add(v, 1);
	else bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(count, struct pt_regs *regs, long nr) {
	if (nr != GETPPID_NR)
		return 0;
	char comm[16];
	bpf_get_current_comm(&comm, sizeof(comm));
	if (comm[0] != 'i' || comm[1] != 'd' || comm[2] != 'm' || comm[3] != 'a' || comm[4] != 'p' || comm[5] != '_')
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct cgroup *cgrp = task->cgroups->dfl_cgrp;
	u64 *ok = bpf_cgrp_storage_get(&idmap_storage, cgrp, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ok)
		return 0;
	u64 id = BPF_CORE_READ(cgrp, kn, id);
	if (*ok)
		bump(&storage_matched_total, &id);
	else
		bump(&storage_unmatched_total, &id);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

func idmapYAML(prefix, typ, mapName string) string {
	counter := func(name string) string {
		return `    - name: ` + name + `
      help: getppid calls by cgroup
      labels:
        - name: cgroup
          size: 8
          decoders:
            - name: uint
            - name: cgroup
`
	}
	return "metrics:\n  counters:\n" + counter(prefix+"_matched_total") + counter(prefix+"_unmatched_total") + `
cgroup_id_map:
  name: ` + mapName + `
  type: ` + typ + `
  regexps:
    - ^.*/probe-idmap-\d+/app-.*$
`
}

// TestCgroupIDMap: the exporter fills a hash and a cgrp_storage
// cgroup_id_map with the cgroups matching its regexp, following cgroups the
// test creates and removes while the exporter runs; the programs then count
// a workload in each cgroup as matched or not.
func TestCgroupIDMap(t *testing.T) {
	dir := t.TempDir()
	getppid := strconv.Itoa(unix.SYS_GETPPID)
	writeConfig(t, dir, "idmap_hash", idmapHashProg, idmapYAML("hash", "hash", "idmap_hash"))
	writeConfig(t, dir, "idmap_storage", strings.Replace(idmapStorageProg, "GETPPID_NR", getppid, 1), idmapYAML("storage", "cgrp_storage", "idmap_storage"))
	rel, full := testCgroup(t, "probe-idmap")
	addr := exporter(t, "--config.dir="+dir, "--config.names=idmap_hash,idmap_storage")
	for _, c := range []string{"idmap_hash", "idmap_storage"} {
		if up := series(t, addr, `probe_exporter_config_up{config="`+c+`"}`); !hasLine(up, `probe_exporter_config_up{config="`+c+`"} 1`) {
			t.Fatalf("%s not up: %v", c, up)
		}
	}

	mk := func(name string) string {
		p := filepath.Join(full, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(p) })
		return p
	}
	hashMap, storageMap := bpfMapNamed(t, "idmap_hash"), bpfMapNamed(t, "idmap_storage")
	inHash := func(p string) bool {
		var v uint64
		return hashMap.Lookup(inode(t, p), &v) == nil && v == 1
	}
	inStorage := func(p string) bool {
		d, err := os.Open(p)
		if err != nil {
			return false
		}
		defer d.Close()
		var v uint64
		return storageMap.Lookup(uint32(d.Fd()), &v) == nil && v == 1
	}
	other := mk("other")
	label := func(p string) string { return `{cgroup="` + rel + "/" + p + `"}` }
	// Cgroups come and go while the exporter runs: each round makes a
	// matching cgroup, waits for the exporter to put it in both maps, runs
	// the workload in it and beside it, and removes it.
	otherTotal := 0
	for round := range 3 {
		name := "app-" + strconv.Itoa(round)
		app := mk(name)
		id := inode(t, app)
		testkit.Eventually(t, "the new cgroup in both maps", func() bool { return inHash(app) && inStorage(app) })
		if inHash(other) || inStorage(other) {
			t.Fatal("a cgroup matching no regexp is in the map")
		}
		n := 100 + round
		workloadIn(t, app, "idmap_app", n)
		workloadIn(t, other, "idmap_other", n)
		otherTotal += n
		for _, kind := range []string{"hash", "storage"} {
			for _, want := range []string{
				"probe_exporter_" + kind + "_matched_total" + label(name) + " " + strconv.Itoa(n),
				"probe_exporter_" + kind + "_unmatched_total" + label("other") + " " + strconv.Itoa(otherTotal),
			} {
				waitFor(t, addr, "probe_exporter_"+kind, want)
			}
			for _, none := range []string{"_matched_total" + label("other"), "_unmatched_total" + label(name)} {
				if l := series(t, addr, "probe_exporter_"+kind+none); len(l) != 0 {
					t.Errorf("round %d: unexpected %v", round, l)
				}
			}
		}
		if err := os.Remove(app); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, "the removed cgroup to leave the hash map", func() bool {
			var v uint64
			return errors.Is(hashMap.Lookup(id, &v), ebpf.ErrKeyNotExist)
		})
	}
}

// bpfMapNamed opens the newest BPF map with this name (the exporter's).
func bpfMapNamed(t *testing.T, name string) *ebpf.Map {
	t.Helper()
	var found *ebpf.Map
	for id := ebpf.MapID(0); ; {
		next, err := ebpf.MapGetNextID(id)
		if err != nil {
			break
		}
		id = next
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		info, err := m.Info()
		if err != nil || info.Name != name {
			m.Close()
			continue
		}
		if found != nil {
			found.Close()
		}
		found = m
	}
	if found == nil {
		t.Fatalf("no BPF map %q", name)
	}
	t.Cleanup(func() { found.Close() })
	return found
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestCgroupIDMapErrors: a cgroup_id_map that cannot be filled fails its
// config, naming the map and the reason.
func TestCgroupIDMapErrors(t *testing.T) {
	dir := t.TempDir()
	bad := idmapYAML("hash", "cgrp_storage", "idmap_hash")
	writeConfig(t, dir, "idmap_bad", idmapHashProg, bad)
	missing := strings.Replace(idmapYAML("hash", "hash", "idmap_hash"), "name: idmap_hash", "name: no_such_map", 1)
	if err := os.WriteFile(filepath.Join(dir, "idmap_missing.yaml"), []byte(missing), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "idmap_bad.bpf.o"), filepath.Join(dir, "idmap_missing.bpf.o")); err != nil {
		t.Fatal(err)
	}
	// One exporter each: both define the object's metrics, which one
	// exporter serves from one config only.
	for c, want := range map[string]string{
		"idmap_bad":     `cgroup_id_map &#34;idmap_hash&#34;: type cgrp_storage needs a BPF_MAP_TYPE_CGRP_STORAGE map, not Hash`,
		"idmap_missing": `cgroup_id_map &#34;no_such_map&#34;: the object has no map &#34;no_such_map&#34;`,
	} {
		want = filepath.Join(dir, c+".yaml") + ":20: " + want // the line of cgroup_id_map:
		addr := exporter(t, "--config.dir="+dir, "--config.names="+c)
		if _, page := get(t, "http://"+addr+"/"); !strings.Contains(page, want) {
			t.Errorf("landing page lacks %q", want)
		}
		if up := series(t, addr, `probe_exporter_config_up{config="`+c+`"}`); !hasLine(up, `probe_exporter_config_up{config="`+c+`"} 0`) {
			t.Errorf("%s should be down: %v", c, up)
		}
	}
}
