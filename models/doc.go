// Package models checks and evaluates a pipeline's chain of layered ONNX
// models before it is deployed.
//
// Check opens every tier's model and verifies the chain: the pipeline input
// fits the first tier, each forward output fits the next tier's input, every
// exit head has as many classes as the pipeline names, and the last tier does
// not forward. Eval runs a labeled test set through the chain exactly as the
// pipeline does (the inference package's preprocessing and exit policies)
// and reports exits and accuracy per tier; Sweep shows accuracy against exit
// ratio over a grid of thresholds; ScoreWarnings flags exit heads declared
// probabilities that do not emit them. Test sets are gzipped IDX or NumPy
// .npy files (LoadDataset); a Transform changes one reproducibly (noise,
// contrast, brightness, inversion, a shift, a class selection) to evaluate
// the chain under drift, and ParsePhases reads a drift workload's phases. The directory also holds the sample DDNN:
// train.py, the exported ONNX files, a labeled test subset and golden
// outputs, and testdata/f32, a small float32 pipeline scored in NumPy.
//
// This package reads models; it never serves them.
package models
