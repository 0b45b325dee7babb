package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/bcc"
	"github.com/probe-exporter/probe_exporter/config"
	toolchain "github.com/probe-exporter/probe_exporter/internal/clang"
	"github.com/probe-exporter/probe_exporter/internal/privdir"
)

// bccVersion changes the translation cache key when the translator's
// output changes.
const bccVersion = "bcc-2"

// translateBCC turns inline code in bcc's dialect into libbpf-style C
// (code in libbpf style is returned as it is). It returns the functions
// left out because the running kernel lacks what they use. The translated
// C is kept in the cache directory and logged, so users can read and keep
// it.
func (c *Compiler) translateBCC(ctx context.Context, dir, hdr string, cfg config.Config) (string, map[string]error, []string, error) {
	if !bcc.IsBCC(cfg.Code) {
		return cfg.Code, nil, nil, nil
	}
	src := bcc.Source{Config: cfg.Name, Code: cfg.Code, Cflags: cfg.Cflags, PIDKeys: pidKeys(cfg)}
	for _, ap := range cfg.Attach {
		src.Probes = append(src.Probes, bcc.Probe{Kind: string(ap.Kind), Target: ap.Target, Func: ap.Program})
	}
	probes, _ := json.Marshal(src.Probes)
	sum := sha256.Sum256([]byte(bccVersion + "\x00" + cfg.Name + "\x00" + cfg.Code + "\x00" + strings.Join(cfg.Cflags, "\x00") + "\x00" + string(probes) + "\x00" + btfID(hdr) + "\x00" + fmt.Sprint(src.PIDKeys)))
	key := hex.EncodeToString(sum[:])
	base := filepath.Join(dir, cfg.Name+"-"+key[:16]+".bcc")
	code, meta, err := c.cachedTranslation(base, key)
	if err != nil {
		c.rejected(base+".json", err)
		clang, err := c.clang()
		if err != nil {
			return "", nil, nil, err
		}
		args := toolchain.TargetFlags(filepath.Dir(hdr))
		for _, f := range cfg.Cflags {
			if strings.HasPrefix(f, "-I") {
				args = append(args, f)
			}
		}
		t := &bcc.Translator{Clang: clang, Args: args, PCH: filepath.Join(filepath.Dir(hdr), "bcc-prelude.h.pch")}
		res, err := t.Translate(ctx, src)
		if err != nil {
			return "", nil, nil, fmt.Errorf("translating bcc code: %w", err)
		}
		code, meta = res.Code, translationMeta{Dropped: map[string]string{}, Notes: res.Notes, PIDMaps: res.PIDMaps}
		for f, e := range res.Dropped {
			meta.Dropped[f] = e.Error()
		}
		data, _ := json.Marshal(meta)
		// The C first, then what marks it complete; both whole and
		// recorded, as other exporters may share the cache.
		if err := privdir.WriteEntry(base+".c", key, []byte(code)); err != nil {
			return "", nil, nil, fmt.Errorf("compiler cache: %w", err)
		}
		if err := privdir.WriteEntry(base+".json", key, data); err != nil {
			return "", nil, nil, fmt.Errorf("compiler cache: %w", err)
		}
	}
	level := slog.LevelDebug
	if c.ShowTranslated {
		level = slog.LevelInfo
	}
	dropped := map[string]error{}
	for f, m := range meta.Dropped {
		dropped[f] = errors.New(m)
	}
	if c.Logger != nil {
		c.Logger.Log(ctx, level, "bcc code translated to libbpf C", "config", cfg.Name, "file", base+".c", "notes", strings.Join(meta.Notes, "; "), "code", code)
		for f, e := range dropped {
			c.Logger.Warn("bcc function left out", "config", cfg.Name, "function", f, "err", e)
		}
	}
	return code, dropped, meta.PIDMaps, nil
}

// translationMeta is what a cached translation keeps beside its C.
type translationMeta struct {
	Dropped map[string]string `json:"dropped"`
	Notes   []string          `json:"notes"`
	PIDMaps []string          `json:"pid_maps"`
}

// maxTranslation bounds what is read back from the cache as a
// translation or its record.
const maxTranslation = 16 << 20

func (c *Compiler) cachedTranslation(base, key string) (string, translationMeta, error) {
	var meta translationMeta
	data, err := privdir.ReadEntry(base+".json", key, maxTranslation)
	if err != nil {
		return "", meta, err
	}
	code, err := privdir.ReadEntry(base+".c", key, maxTranslation)
	if err != nil {
		return "", meta, err
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return "", meta, fmt.Errorf("%s: %w: %w", base+".json", privdir.ErrBadEntry, err)
	}
	return string(code), meta, nil
}

// pidKeys reports whether a bcc config gets ebpf-userspace-exporter's
// implicit pid label: it selects processes, attaches only userspace
// probes, and none of its metrics has a pid label of its own.
func pidKeys(cfg config.Config) bool {
	if cfg.Attachments == nil || len(cfg.Attach) == 0 {
		return false
	}
	for _, ap := range cfg.Attach {
		switch ap.Kind {
		case config.AttachUSDT, config.AttachUprobe, config.AttachUretprobe:
		default:
			return false
		}
	}
	for _, ls := range metricLabels(cfg.Metrics) {
		for _, l := range ls {
			if l.Name == "pid" {
				return false
			}
		}
	}
	return true
}

func metricLabels(m config.Metrics) [][]config.Label {
	var out [][]config.Label
	for _, c := range m.Counters {
		out = append(out, c.Labels)
	}
	for _, c := range m.Gauges {
		out = append(out, c.Labels)
	}
	for _, h := range m.Histograms {
		out = append(out, h.Labels)
	}
	return out
}

// withPIDLabels gives the metrics of maps whose keys start with the pid
// a first label pid, sized to what the key has beyond the config's labels
// (the u32 and the padding to the code's key).
func withPIDLabels(m config.Metrics, pidMaps []string, spec *ebpf.CollectionSpec) config.Metrics {
	if len(pidMaps) == 0 {
		return m
	}
	label := func(mapName string, ls []config.Label) []config.Label {
		ms, ok := spec.Maps[mapName]
		if !ok || !slices.Contains(pidMaps, mapName) {
			return ls
		}
		var sum uint
		for _, l := range ls {
			sum += l.Size + l.Padding
		}
		if uint(ms.KeySize) <= sum {
			return ls
		}
		pid := config.Label{Name: "pid", Size: uint(ms.KeySize) - sum, Decoders: []config.Decoder{{Name: "uint"}}}
		return append([]config.Label{pid}, ls...)
	}
	out := m
	out.Counters = append([]config.Counter(nil), m.Counters...)
	for i := range out.Counters {
		out.Counters[i].Labels = label(out.Counters[i].MapName(), out.Counters[i].Labels)
	}
	out.Gauges = append([]config.Counter(nil), m.Gauges...)
	for i := range out.Gauges {
		out.Gauges[i].Labels = label(out.Gauges[i].MapName(), out.Gauges[i].Labels)
	}
	out.Histograms = append([]config.Histogram(nil), m.Histograms...)
	for i := range out.Histograms {
		out.Histograms[i].Labels = label(out.Histograms[i].MapName(), out.Histograms[i].Labels)
	}
	return out
}

// markDropped gives the programs the translation left out their reason:
// the running kernel lacks what their code uses.
func markDropped(progs []*Program, dropped map[string]error) {
	for _, p := range progs {
		if err, ok := dropped[p.Name]; ok {
			p.Err = &kernelLacks{err}
		}
	}
}
