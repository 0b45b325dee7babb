package config

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// seedFile is the bcc-era layout of ebpf_exporter v1 and ebpf-userspace-exporter.
type seedFile struct {
	Programs []seedProgram `yaml:"programs"`
}

type seedProgram struct {
	Name           string       `yaml:"name"`
	Metrics        Metrics      `yaml:"metrics"`
	Kprobes        yaml.Node    `yaml:"kprobes"`
	Kretprobes     yaml.Node    `yaml:"kretprobes"`
	Tracepoints    yaml.Node    `yaml:"tracepoints"`
	RawTracepoints yaml.Node    `yaml:"raw_tracepoints"`
	PerfEvents     []PerfEvent  `yaml:"perf_events"`
	USDT           yaml.Node    `yaml:"usdt"`
	Uprobes        yaml.Node    `yaml:"uprobes"`
	Uretprobes     yaml.Node    `yaml:"uretprobes"`
	Attachments    *attachments `yaml:"attachments"`
	// Attachment is ebpf-userspace-exporter's own spelling of attachments.
	Attachment *attachments `yaml:"attachment"`
	Cflags     []string     `yaml:"cflags"`
	Code       string       `yaml:"code"`
	Kaddrs     []string     `yaml:"kaddrs"`
}

func parseSeed(path string, data []byte, doc *yaml.Node) ([]Config, error) {
	var f seedFile
	var err error
	if doc.Kind == yaml.SequenceNode {
		var list []seedFile
		err = strictDecode(data, &list)
		for _, l := range list {
			f.Programs = append(f.Programs, l.Programs...)
		}
		doc = doc.Content[0]
	} else {
		err = strictDecode(data, &f)
	}
	if err != nil {
		return nil, yamlError(path, err)
	}
	progNodes := child(doc, "programs")
	var cfgs []Config
	seen := map[string]bool{}
	for i, p := range f.Programs {
		line := 0
		var node *yaml.Node
		if progNodes != nil && i < len(progNodes.Content) {
			node = progNodes.Content[i]
			line = node.Line
		}
		fail := func(l int, format string, args ...any) error {
			if l == 0 {
				l = line
			}
			return &FileError{Path: path, Line: l, Err: fmt.Errorf("program %q: %s", p.Name, fmt.Sprintf(format, args...))}
		}
		if p.Name == "" {
			return nil, fail(line, "has no name")
		}
		if seen[p.Name] {
			return nil, fail(line, "is defined twice")
		}
		seen[p.Name] = true
		if strings.TrimSpace(p.Code) == "" {
			p.Code = "" // blank code: none, the object beside the file
		}
		if p.Code == "" && (strings.ContainsAny(p.Name, "/\x00") || p.Name == "." || p.Name == "..") {
			return nil, fail(line, "has no code: and a name that cannot name its object file (NAME.bpf.o beside the config)")
		}
		if p.Code == "" && len(p.Cflags) > 0 {
			return nil, fail(child(node, "cflags").Line, "has cflags: but no code: to compile (its object is NAME.bpf.o beside the file)")
		}
		if p.Attachments == nil {
			p.Attachments = p.Attachment
		} else if p.Attachment != nil {
			return nil, fail(line, "has both attachment: and attachments:")
		}
		c := Config{
			Name: p.Name,
			Path: path,
			// Without code: the program's object, compiled ahead of
			// time, is NAME.bpf.o beside the file (Load names it).
			Line:        line,
			Metrics:     p.Metrics,
			Code:        p.Code,
			Cflags:      p.Cflags,
			Kaddrs:      p.Kaddrs,
			Attachments: p.Attachments.selector(),
		}
		setMetricLines(&c, child(node, "metrics"))
		for _, am := range []struct {
			node *yaml.Node
			kind AttachKind
		}{
			{&p.Kprobes, AttachKprobe},
			{&p.Kretprobes, AttachKretprobe},
			{&p.Tracepoints, AttachTracepoint},
			{&p.RawTracepoints, AttachRawTracepoint},
			{&p.USDT, AttachUSDT},
			{&p.Uprobes, AttachUprobe},
			{&p.Uretprobes, AttachUretprobe},
		} {
			aps, err := attachPoints(am.node, am.kind)
			if err != nil {
				return nil, fail(am.node.Line, "%v", err)
			}
			c.Attach = append(c.Attach, aps...)
		}
		pes := child(node, "perf_events")
		for j, pe := range p.PerfEvents {
			pe := pe
			l := line
			if pes != nil && j < len(pes.Content) {
				l = pes.Content[j].Line
			}
			if pe.Target == "" {
				return nil, fail(l, "perf event has no target function")
			}
			if pe.SampleFrequency == 0 && pe.SamplePeriod == 0 {
				return nil, fail(l, "perf event needs sample_frequency or sample_period")
			}
			c.Attach = append(c.Attach, AttachPoint{Kind: AttachPerfEvent, Program: pe.Target, PerfEvent: &pe, Line: l})
		}
		if len(c.Attach) == 0 {
			return nil, fail(line, "attaches nowhere: give kprobes, kretprobes, tracepoints, raw_tracepoints, perf_events, usdt, uprobes or uretprobes")
		}
		if err := c.validate(); err != nil {
			return nil, err
		}
		cfgs = append(cfgs, c)
	}
	if len(cfgs) == 0 {
		return nil, &FileError{Path: path, Line: doc.Line, Err: errors.New("programs: is empty")}
	}
	return cfgs, nil
}

// attachPoints reads a mapping of attach point -> BPF function, in order.
func attachPoints(n *yaml.Node, kind AttachKind) ([]AttachPoint, error) {
	if n == nil || n.Kind == 0 {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%ss: want a mapping of attach point to function", kind)
	}
	var out []AttachPoint
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode || v.Value == "" {
			return nil, fmt.Errorf("%s %q: want the name of a BPF function", kind, k.Value)
		}
		if kind == AttachTracepoint && !strings.Contains(k.Value, ":") {
			return nil, fmt.Errorf("tracepoint %q: want category:name", k.Value)
		}
		out = append(out, AttachPoint{Kind: kind, Target: k.Value, Program: v.Value, Line: k.Line})
	}
	return out, nil
}
