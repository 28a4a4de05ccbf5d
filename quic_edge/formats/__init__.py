"""The files that cross from desktop to device and back, with no torch: bundles (manifest, root digest, signature),
personal deltas, the identity that ties them to a base and adapter, and crash-safe writes.

Exporters (quic_edge.export) write these formats and device loops (quic_edge.runtimes) read them; both import this
package, and it imports neither.
"""
