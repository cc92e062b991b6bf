// Package inference owns a tier's inference function: the ONNX Runtime
// session of the tier's model, the per-sample exit policies (max_prob,
// entropy, margin), and the HTTP function that takes a batch of messages and
// answers one decision per message: exit (class, label, confidence) or
// forward (the tensor for the next tier).
//
// The function never talks to Kafka. Delivering decisions onward (results
// funnel, next tier's funnel) goes through a Deliverer supplied by the caller,
// and the function answers only after delivery was acknowledged. Encoding and
// decoding of messages belong to internal/wire.
package inference
