"""Storage layers for other frameworks (LangGraph, Powertools), each behind its own extra."""
