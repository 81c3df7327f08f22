"""Data in: Replicator renders (source), rosbag2 camera frames (target), the demo simulator."""
