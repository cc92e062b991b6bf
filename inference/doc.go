// Package inference owns a tier's inference function: the ONNX Runtime
// session of the tier's model, the per-sample exit policies (max_prob,
// entropy, margin), and the HTTP function that takes a batch of messages and
// answers one decision per message: exit (class, label, confidence) or
// forward (the tensor for the next tier, written into the answer once).
//
// The function is pure: it never talks to Kafka or to a funnel, and it
// keeps nothing of a call. The tier's connector, which called it, writes
// its decisions where they go (the results, the next tier's input, or the
// uplink queue of another site) and commits only once Kafka acknowledged
// them. Encoding and decoding of messages belong to internal/wire.
package inference
