package mmsg

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// A burst queued on the socket comes back from one ReadBatch (on Linux;
// one datagram a read elsewhere), each datagram whole, with its length
// and its sender, and the reader waits when nothing is queued.
func TestReadBatchTakesAQueuedBurst(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	r, err := NewReader(rx)
	if err != nil {
		t.Fatal(err)
	}
	const sent = MaxBatch + 3
	for i := range sent {
		if _, err := tx.Write(bytes.Repeat([]byte{byte(i)}, 100+i)); err != nil {
			t.Fatal(err)
		}
	}
	var bufs [MaxBatch][]byte
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	var lens [MaxBatch]int
	var froms [MaxBatch]netip.AddrPort
	from := tx.LocalAddr().(*net.UDPAddr).AddrPort()
	got, reads := 0, 0
	for got < sent {
		n, err := r.ReadBatch(bufs[:], lens[:], froms[:])
		if err != nil {
			t.Fatal(err)
		}
		reads++
		for i := range n {
			want := bytes.Repeat([]byte{byte(got)}, 100+got)
			if !bytes.Equal(bufs[i][:lens[i]], want) {
				t.Fatalf("datagram %d: %d bytes %x…, want %d bytes of %x", got, lens[i], bufs[i][:1], len(want), want[:1])
			}
			if froms[i] != from {
				t.Errorf("datagram %d from %s, want %s", got, froms[i], from)
			}
			got++
		}
	}
	if runtime.GOOS == "linux" && reads != 2 {
		t.Errorf("%d datagrams took %d reads, want 2 (%d at most a read)", sent, reads, MaxBatch)
	}
	go func() { // a read that has to wait for its datagram
		time.Sleep(50 * time.Millisecond)
		fmt.Fprint(tx, "late")
	}()
	if n, err := r.ReadBatch(bufs[:], lens[:], froms[:]); err != nil || n != 1 || string(bufs[0][:lens[0]]) != "late" {
		t.Errorf("waiting read: %d datagrams, %q, %v", n, bufs[0][:lens[0]], err)
	}
}
