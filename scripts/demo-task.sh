#!/bin/sh
# A demo task for `muster report`: its runtime varies with the input, every 13th input fails,
# and input 40 runs past a 2 s time limit.
n=$1
sleep "0.$(( (n * 37) % 9 ))$(( n % 7 ))"
[ "$n" -eq 40 ] && sleep 5
[ $(( n % 13 )) -ne 0 ]
