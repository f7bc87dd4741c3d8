// Package browsertest drives the SFU's demo page (sfu/web) in headless
// Chromium and Firefox against an in-process SFU: real browsers publish
// fake camera and microphone media and decode each other's through the
// server, in every pairing of the two. The tests run inside a private
// network namespace (internal/netns).
package browsertest
