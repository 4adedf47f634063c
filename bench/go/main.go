// The Go SDK side of the benchmark (go.temporal.io/sdk, the version go.mod pins): the twin
// of bench/workload.lua and bench/workload.py, built by bench/run.sh into .testbed/bench/.
//
//	bench-go throughput '{"address":"127.0.0.1:7233","count":2000,...}'
//
// One workload per process, parameters as JSON, results as one JSON object on stdout, the
// same work in the same order through the SDK's public client API (client.Dial,
// ExecuteWorkflow, GetWorkflow, DescribeWorkflowExecution, QueryWorkflow, SignalWorkflow,
// converter.GetDefaultDataConverter). Timing uses CLOCK_MONOTONIC; client CPU is
// CLOCK_PROCESS_CPUTIME_ID (every thread, like os.clock() in temporal-lua); server CPU is read
// from /proc/<pid>/stat of the dev server (and the worker) around the measured section only.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"golang.org/x/sys/unix"
)

var P map[string]any

func clock(id int32) float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		panic(err)
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func now() float64 { return clock(unix.CLOCK_MONOTONIC) }

func num(k string) float64 {
	v, ok := P[k].(float64)
	if !ok {
		panic("parameter " + k + " missing")
	}
	return v
}

func str(k string) string {
	v, _ := P[k].(string)
	return v
}

func rssKiB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		panic(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return n
		}
	}
	panic("no " + field)
}

func procCPU(pid string) (float64, float64, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	tck := num("clk_tck")
	return u / tck, st / tck, true
}

func machineCPU() float64 {
	b, _ := os.ReadFile("/proc/stat")
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
	sum := 0.0
	for _, i := range []int{0, 1, 2, 5, 6, 7} {
		v, _ := strconv.ParseFloat(f[i], 64)
		sum += v
	}
	return sum / num("clk_tck")
}

type sides map[string]float64

func take() sides {
	t := sides{"client_cpu": clock(unix.CLOCK_PROCESS_CPUTIME_ID), "wall": now(), "machine_cpu": machineCPU()}
	t["client_user"], t["client_sys"], _ = procCPU("self")
	for _, who := range []string{"server", "worker"} {
		if pid, ok := P[who+"_pid"].(float64); ok {
			if u, s, ok := procCPU(strconv.Itoa(int(pid))); ok {
				t[who+"_cpu"] = u + s
			}
		}
	}
	return t
}

func deltas(a, b sides, into map[string]any) map[string]any {
	for k, v := range a {
		if w, ok := b[k]; ok {
			into[k] = w - v
		}
	}
	return into
}

func connect() client.Client {
	c, err := client.Dial(client.Options{
		HostPort:  str("address"),
		Namespace: str("namespace"),
		Logger:    tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	})
	if err != nil {
		panic(err)
	}
	return c
}

// `concurrency` goroutines each take the next index until `count` are done.
func parallel(count, concurrency int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > count {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func throughput() map[string]any {
	c := connect()
	defer c.Close()
	rssConnected := rssKiB("VmRSS")
	count, concurrency := int(num("count")), int(num("concurrency"))
	lat := make([]float64, count)
	ctx := context.Background()
	before := take()
	parallel(count, concurrency, func(i int) {
		t0 := now()
		_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: fmt.Sprintf("%s%d", str("id_prefix"), i), TaskQueue: str("task_queue"),
		}, str("workflow_type"), "payload")
		if err != nil {
			panic(err)
		}
		lat[i-1] = now() - t0
	})
	after := take()
	return deltas(before, after, map[string]any{"calls": count, "latencies": lat,
		"rss_connected_kib": rssConnected, "rss_end_kib": rssKiB("VmRSS")})
}

func rpcThroughput() map[string]any {
	c := connect()
	defer c.Close()
	count, concurrency := int(num("count")), int(num("concurrency"))
	ctx := context.Background()
	before := take()
	parallel(count, concurrency, func(int) {
		if _, err := c.WorkflowService().GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{}); err != nil {
			panic(err)
		}
	})
	return deltas(before, take(), map[string]any{"calls": count})
}

func memory() map[string]any {
	c := connect()
	defer c.Close()
	runtime.GC()
	rssConnected, anonConnected := rssKiB("VmRSS"), rssKiB("RssAnon")
	count := int(num("count"))
	handles := make([]client.WorkflowRun, count)
	ctx := context.Background()
	for i := range handles {
		handles[i] = c.GetWorkflow(ctx, fmt.Sprintf("%s%d", str("id_prefix"), i+1), uuid.NewString())
	}
	runtime.GC()
	rssHandles := rssKiB("VmRSS")
	runtime.KeepAlive(handles)
	return map[string]any{"handles": count, "rss_connected_kib": rssConnected, "rss_handles_kib": rssHandles,
		"rss_anon_connected_kib": anonConnected, "rss_file_connected_kib": rssKiB("RssFile")}
}

func coldStart() {
	c := connect()
	fmt.Printf("%.6f", now())
	c.Close()
}

func makeValue(records int) map[string]any {
	list := make([]any, records)
	for i := 1; i <= records; i++ {
		list[i-1] = map[string]any{
			"id": i, "name": fmt.Sprintf("user-%d", i), "email": fmt.Sprintf("user%d@example.com", i),
			"active": i%2 == 0, "score": float64(i) * 1.5, "tags": []any{"alpha", "beta", "gamma"},
			"address": map[string]any{"street": fmt.Sprintf("%d Main Street", i), "city": "Springfield",
				"zip": fmt.Sprintf("%05d", i)},
		}
	}
	return map[string]any{"kind": "bench", "records": list}
}

func payload() map[string]any {
	dc := converter.GetDefaultDataConverter()
	roundTrip := func(v any) map[string]any {
		ps, err := dc.ToPayloads(v)
		if err != nil {
			panic(err)
		}
		var out map[string]any
		if err := dc.FromPayloads(ps, &out); err != nil {
			panic(err)
		}
		return out
	}
	var results []map[string]any
	before := take()
	for _, s := range P["sizes"].([]any) {
		size := s.(map[string]any)
		records := int(size["records"].(float64))
		value := makeValue(records)
		ps, _ := dc.ToPayloads(value)
		back := roundTrip(value)["records"].([]any)
		if int(back[records-1].(map[string]any)["id"].(float64)) != records {
			panic("payload round trip lost data")
		}
		iterations, t0, c0 := 0, now(), clock(unix.CLOCK_PROCESS_CPUTIME_ID)
		for {
			roundTrip(value)
			iterations++
			if iterations >= 3 && now()-t0 >= num("min_seconds") {
				break
			}
		}
		results = append(results, map[string]any{"label": size["label"], "bytes": len(ps.Payloads[0].Data),
			"iterations": iterations, "seconds_per_op": (now() - t0) / float64(iterations),
			"cpu_per_op": (clock(unix.CLOCK_PROCESS_CPUTIME_ID) - c0) / float64(iterations)})
	}
	return deltas(before, take(), map[string]any{"sizes": results})
}

func latency() map[string]any {
	c := connect()
	defer c.Close()
	ctx := context.Background()
	tq, prefix, n := str("worker_task_queue"), str("id_prefix"), int(num("count"))
	out := map[string]any{}
	timed := func(op string, count int, fn func(i int)) {
		lat := make([]float64, count)
		before := take()
		for i := 1; i <= count; i++ {
			t0 := now()
			fn(i)
			lat[i-1] = now() - t0
		}
		out[op] = deltas(before, take(), map[string]any{"calls": count, "latencies": lat})
	}
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	start := func(id string) client.WorkflowRun {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, "WaitForSignal")
		must(err)
		return run
	}
	query := func(id string) {
		v, err := c.QueryWorkflow(ctx, id, "", "status")
		must(err)
		var st map[string]any
		must(v.Get(&st))
		if st["approved"] != false {
			panic("unexpected query result")
		}
	}
	h := start(prefix + "wait")
	// The first query waits for the worker's first workflow task: not part of the numbers.
	query(h.GetID())
	timed("describe", n, func(int) {
		_, err := c.DescribeWorkflowExecution(ctx, h.GetID(), "")
		must(err)
	})
	timed("query", n, func(int) { query(h.GetID()) })
	// The first "approve" completes the workflow, so each signal goes to a fresh one
	// (started outside the timed call).
	fresh := make([]client.WorkflowRun, n)
	for i := range fresh {
		fresh[i] = start(fmt.Sprintf("%ssig-%d", prefix, i+1))
	}
	timed("signal", n, func(i int) { must(c.SignalWorkflow(ctx, fresh[i-1].GetID(), "", "approve", i)) })
	timed("execute", int(num("execute_count")), func(i int) {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("%sgreet-%d", prefix, i),
			TaskQueue: tq}, "Greet", "bench")
		must(err)
		var r string
		must(run.Get(ctx, &r))
		if r != "Hello, bench!" {
			panic("unexpected result " + r)
		}
	})
	must(c.SignalWorkflow(ctx, h.GetID(), "", "approve", nil))
	return out
}

// `count` result() long polls held open at once on one workflow nobody runs, released
// together by terminating it.
func scaling() map[string]any {
	c := connect()
	defer c.Close()
	ctx := context.Background()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: str("id"), TaskQueue: str("task_queue")},
		str("workflow_type"))
	if err != nil {
		panic(err)
	}
	runtime.GC()
	rssBefore := rssKiB("VmRSS")
	count := int(num("count"))
	var issued, returned atomic.Int64
	var wg sync.WaitGroup
	t0 := now()
	for i := 0; i < count; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			issued.Add(1)
			if err := c.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, nil); err == nil {
				panic("a terminated workflow's result returns an error")
			}
			returned.Add(1)
		}()
	}
	for issued.Load() < int64(count) {
		time.Sleep(10 * time.Millisecond)
	}
	issueS := now() - t0
	time.Sleep(time.Duration(num("settle_seconds") * float64(time.Second))) // the calls reach the server
	a := take()
	time.Sleep(time.Duration(num("idle_seconds") * float64(time.Second)))
	b := take()
	runtime.GC()
	rssHeld := rssKiB("VmRSS")
	if returned.Load() != 0 {
		panic("a call returned before the release")
	}
	t1 := now()
	if err := c.TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), "bench release"); err != nil {
		panic(err)
	}
	wg.Wait()
	return map[string]any{"calls": count, "rss_before_kib": rssBefore, "rss_held_kib": rssHeld, "issue_s": issueS,
		"idle_cpu": b["client_cpu"] - a["client_cpu"], "idle_wall": b["wall"] - a["wall"],
		"release_s": now() - t1, "returned": returned.Load()}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench-go WORKLOAD PARAMS_JSON")
		os.Exit(2)
	}
	raw := "{}"
	if len(os.Args) > 2 {
		raw = os.Args[2]
	}
	if err := json.Unmarshal([]byte(raw), &P); err != nil {
		panic(err)
	}
	var result map[string]any
	switch os.Args[1] {
	case "throughput":
		result = throughput()
	case "rpc_throughput":
		result = rpcThroughput()
	case "memory":
		result = memory()
	case "payload":
		result = payload()
	case "latency":
		result = latency()
	case "scaling":
		result = scaling()
	case "cold_start":
		coldStart()
		return
	default:
		fmt.Fprintln(os.Stderr, "unknown workload "+os.Args[1])
		os.Exit(2)
	}
	result["api"] = "high-level"
	b, err := json.Marshal(result)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(b, '\n'))
}
