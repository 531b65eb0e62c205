"""Events in, results out: the recorder, the aggregation loop and its Lua scripts, statistics, UX/CX, journeys, export."""
