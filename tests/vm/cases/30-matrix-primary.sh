#!/usr/bin/env bash
# The failure matrix for the primary: every fault in every phase, each cell
# checked against what Documentation/reliability.rst says (see matrix.sh).
# vm-timeout: 1500
. "$FRACTURE_VM/lib.sh"
. "$FRACTURE_VM/matrix.sh"
matrix_role primary
