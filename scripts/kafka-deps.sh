#!/usr/bin/env bash
# Fetches the Apache Kafka server and tools jars (org.apache.kafka:kafka_2.13
# and kafka-tools, with every runtime dependency) from Maven Central into
# .deps/kafka/<version>/libs, for the tests that run a real KRaft cluster
# (internal/kafkatest, internal/e2e's Apache Kafka suite).
#
# Idempotent: does nothing when every jar listed in scripts/kafka-<version>.sha256
# is present with its sha256. Installs Java 17 and Maven with apt when
# missing. Without them or Maven Central it warns and exits 0: the Apache
# Kafka tests then skip and say why.
set -euo pipefail

VERSION=4.4.0
# The log4j binding Kafka's own distribution ships; without it the brokers'
# slf4j logging goes nowhere.
LOG4J=2.25.5

root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.deps/kafka/$VERSION
sums=$root/scripts/kafka-$VERSION.sha256

skip() {
	echo "kafka-deps: WARNING: $*; the Apache Kafka tests will skip" >&2
	exit 0
}

# complete DIR: DIR holds exactly the jars of the sums file, each with its sum.
complete() {
	[[ -d $1 ]] || return 1
	(cd "$1" && sha256sum --quiet --strict -c "$sums" >/dev/null 2>&1) || return 1
	[[ $(find "$1" -maxdepth 1 -name '*.jar' | wc -l) == $(wc -l <"$sums") ]]
}

if complete "$dest/libs"; then
	echo "kafka $VERSION present: $dest/libs"
	exit 0
fi

# apt_install PKG...: install with apt, refreshing the package lists once if
# the first try fails (a fresh machine has none).
apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q "$@" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null 2>&1; }
}

java=${JAVA:-java}
if ! command -v "$java" >/dev/null; then
	echo "kafka-deps: installing openjdk-17-jre-headless with apt"
	apt_install openjdk-17-jre-headless || skip "java is missing and apt could not install openjdk-17-jre-headless"
fi
major=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
((${major:-0} >= 17)) || skip "Kafka $VERSION needs Java 17 or newer; $java is ${major:-unknown}"
if ! command -v mvn >/dev/null; then
	echo "kafka-deps: installing maven with apt"
	apt_install maven || skip "mvn is missing and apt could not install maven"
fi

mkdir -p "$root/.deps/kafka"
tmp=$(mktemp -d "$root/.deps/kafka/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ddnn.deps</groupId>
  <artifactId>kafka-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J</version></dependency>
  </dependencies>
</project>
EOF
echo "downloading Apache Kafka $VERSION jars from Maven Central (about 55 MB)"
if ! mvn -q -B -C -f "$tmp/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
	-DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
	tail -5 "$tmp/mvn.log" >&2
	skip "mvn could not fetch org.apache.kafka:kafka_2.13:$VERSION (is Maven Central reachable?)"
fi
if ! complete "$tmp/libs"; then
	(cd "$tmp/libs" && sha256sum --strict -c "$sums" 2>&1 | grep -v ': OK$' >&2) || true
	echo "kafka-deps: the jars Maven fetched do not match $sums (above); refusing them" >&2
	exit 1
fi
rm -rf "$dest"
mkdir -p "$dest"
mv "$tmp/libs" "$dest/libs"
echo "kafka $VERSION installed: $dest/libs"
