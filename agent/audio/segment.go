package audio

import "math"

// Segmenter cuts a speaker's audio into utterances by its loudness: an
// utterance starts when a frame is louder than the threshold and ends
// after a pause, or when it grows too long for a recogniser to take at
// once. Feed it frames in order; it is not safe for concurrent use.
type Segmenter struct {
	Rate        int     // samples a second
	ThresholdDB float64 // dBFS a frame must exceed to count as speech; 0 means -45
	Pause       int     // silent samples that end an utterance; 0 means 0.6 s
	Max         int     // longest utterance in samples; 0 means 15 s
	Preroll     int     // samples kept before the first loud frame; 0 means 0.2 s

	cur     []int16
	silent  int
	history []int16 // the preroll while nobody speaks
	active  bool
}

func (s *Segmenter) defaults() {
	if s.ThresholdDB == 0 {
		s.ThresholdDB = -45
	}
	if s.Pause == 0 {
		s.Pause = s.Rate * 6 / 10
	}
	if s.Max == 0 {
		s.Max = s.Rate * 15
	}
	if s.Preroll == 0 {
		s.Preroll = s.Rate / 5
	}
}

// Write takes the next frame (say 20 ms) and returns an utterance if this
// frame ended one.
func (s *Segmenter) Write(frame []int16) []int16 {
	s.defaults()
	loud := LevelDB(frame) > s.ThresholdDB
	if !s.active {
		if !loud {
			s.history = append(s.history, frame...)
			if over := len(s.history) - s.Preroll; over > 0 {
				s.history = s.history[over:]
			}
			return nil
		}
		s.active = true
		s.cur = append(append(s.cur[:0:0], s.history...), frame...)
		s.history = s.history[:0]
		s.silent = 0
		return nil
	}
	s.cur = append(s.cur, frame...)
	if loud {
		s.silent = 0
	} else {
		s.silent += len(frame)
	}
	if s.silent >= s.Pause || len(s.cur) >= s.Max {
		return s.Flush()
	}
	return nil
}

// Current is the utterance in progress (nil between utterances), valid
// until the next Write: a streaming recogniser takes it as it grows.
func (s *Segmenter) Current() []int16 {
	if !s.active {
		return nil
	}
	return s.cur
}

// Flush ends the utterance in progress, if any, and returns it.
func (s *Segmenter) Flush() []int16 {
	if !s.active {
		return nil
	}
	out := s.cur
	s.cur, s.active, s.silent = nil, false, 0
	return out
}

// LevelDB is a frame's RMS level in dBFS (-inf for digital silence).
func LevelDB(frame []int16) float64 {
	if len(frame) == 0 {
		return math.Inf(-1)
	}
	var sum float64
	for _, v := range frame {
		f := float64(v) / 32768
		sum += f * f
	}
	return 10 * math.Log10(sum/float64(len(frame)))
}
