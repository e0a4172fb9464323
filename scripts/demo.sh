#!/usr/bin/env bash
# The main job: train a small English->French model on CPU, translate, and score it.
set -euo pipefail
cd "$(dirname "$0")/.."
export MT_DATA_DIR="${MT_DATA_DIR:-$(cd .. && pwd)/shared/data}"
mt --version
