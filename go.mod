module github.com/ddnn-continuum/ddnn

go 1.26

require (
	github.com/prometheus/client_golang v1.23.2 // indirect
	github.com/yalue/onnxruntime_go v1.27.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
