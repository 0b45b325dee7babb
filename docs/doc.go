// Package docs holds the project's documentation pages (the Markdown files
// beside this one) and the test that keeps their relative links and
// #anchors, and those of README.md and bench/README.md, pointing somewhere
// real. It has no code of its own.
package docs
