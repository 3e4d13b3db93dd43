# Source me: points the docker SDK and CLI at the engine scripts/setup.sh started.
export DOCKER_HOST=${DOCKER_HOST:-unix:///run/sandbank-docker.sock}
