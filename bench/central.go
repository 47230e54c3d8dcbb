package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const (
	// rateBurst is the burst of every limiter in a central run, as in
	// package swarm: a capped stream can run ahead of its rate by this much.
	rateBurst = 256 << 10
	// centralChunk is how much the server writes and a client reads at a
	// time, each after waiting for its limiter.
	centralChunk = 32 << 10
)

// newRateLimiter returns a limiter of bytesPerSec with burst rateBurst, or
// one that never waits for 0.
func newRateLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return rate.NewLimiter(rate.Inf, rateBurst)
	}
	return rate.NewLimiter(rate.Limit(bytesPerSec), rateBurst)
}

// RunCentral is the baseline a swarm run is compared with: the file at
// bundlePath served by one HTTP server on 127.0.0.1 whose total upload is
// capped at p.OriginUp, to p.Nodes HTTP clients each capped at p.NodeDown,
// all starting together. Every client checks the sha256 of what it got. The
// Result (KindCentral) has one completion per client, in seconds from the
// start, and OriginBytes, the body bytes served. progress(done, total) is
// called as clients finish. The run is bounded by ctx and by a limit of
// three times CentralTime plus a minute.
func RunCentral(ctx context.Context, p Params, bundlePath string, progress func(done, total int)) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, fmt.Errorf("central: %w", err)
	}
	want, size, err := fileSHA256(bundlePath)
	if err != nil {
		return Result{}, fmt.Errorf("central: %w", err)
	}
	r := Result{Kind: KindCentral, Params: p}
	if size != p.SizeBytes {
		addNote(&r, fmt.Sprintf("served file is %d bytes, params say %d", size, p.SizeBytes))
	}
	bound := p
	bound.SizeBytes = size
	ctx, cancel := context.WithTimeout(ctx, time.Duration((3*CentralTime(bound)+60)*float64(time.Second)))
	defer cancel()

	meter := startProcMeter(100 * time.Millisecond)
	defer meter.finish(&r) // stops the sampler on early returns

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, fmt.Errorf("central: %w", err)
	}
	var served atomic.Int64
	srv := &http.Server{
		Handler:           centralHandler(bundlePath, size, newRateLimiter(p.OriginUp), &served),
		ReadHeaderTimeout: 10 * time.Second,
	}
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		_ = srv.Serve(ln) // ends with http.ErrServerClosed
	}()
	defer func() {
		srv.Close()
		<-srvDone
	}()
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: p.Nodes}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := "http://" + ln.Addr().String() + "/bundle"

	var (
		mu   sync.Mutex
		done int
		errs []error
		wg   sync.WaitGroup
	)
	baseRSS := rssMiB() // the server alone
	meter.markCPU()
	r.Start = time.Now()
	for i := range p.Nodes {
		wg.Go(func() {
			err := centralFetch(ctx, hc, url, newRateLimiter(p.NodeDown), want, size)
			took := time.Since(r.Start).Seconds()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("client %d: %w", i+1, err))
				return
			}
			r.Completions = append(r.Completions, took)
			done++
			if progress != nil {
				progress(done, p.Nodes)
			}
		})
	}
	wg.Wait()
	var others float64
	r.CPUSeconds, others = meter.cpuSince()
	busyS, windowS := meter.hostSince()
	noteContention(&r, others)
	// A client can finish before its handler has counted the last write.
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	_ = srv.Shutdown(sctx)
	scancel()
	r.OriginBytes = served.Load()
	meter.finish(&r)
	setCost(&r, costSample{
		CPUS: r.CPUSeconds, Delivered: int64(p.Nodes) * size,
		PeakRSS: int64(r.PeakRSSMiB * (1 << 20)), BaseRSS: int64(baseRSS * (1 << 20)), Nodes: p.Nodes,
		BusyS: busyS, WallS: windowS, Cores: hostCores(),
	})
	r.Finish()
	if len(errs) > 0 {
		return r, fmt.Errorf("central: %d of %d clients failed: %w", len(errs), p.Nodes, errors.Join(errs[:min(len(errs), 3)]...))
	}
	return r, nil
}

// centralHandler serves the file, every write waiting for the shared
// limiter, and counts the body bytes sent.
func centralHandler(path string, size int64, lim *rate.Limiter, served *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		buf := make([]byte, centralChunk)
		for {
			n, rerr := f.Read(buf)
			if n > 0 {
				if err := lim.WaitN(req.Context(), n); err != nil {
					return
				}
				m, err := w.Write(buf[:n])
				served.Add(int64(m))
				if err != nil {
					return
				}
			}
			if rerr != nil {
				return
			}
		}
	})
}

// centralFetch downloads url through lim and checks its size and sha256.
func centralFetch(ctx context.Context, hc *http.Client, url string, lim *rate.Limiter, want [sha256.Size]byte, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET: %s", resp.Status)
	}
	h := sha256.New()
	buf := make([]byte, centralChunk)
	var got int64
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if err := lim.WaitN(ctx, n); err != nil {
				return err
			}
			h.Write(buf[:n])
			got += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if got != size {
		return fmt.Errorf("got %d bytes, want %d", got, size)
	}
	if [sha256.Size]byte(h.Sum(nil)) != want {
		return errors.New("sha256 mismatch")
	}
	return nil
}

// fileSHA256 hashes the file at path.
func fileSHA256(path string) (sum [sha256.Size]byte, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	if size, err = io.Copy(h, f); err != nil {
		return sum, 0, err
	}
	return [sha256.Size]byte(h.Sum(nil)), size, nil
}
