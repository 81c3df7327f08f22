"""ROS 2 side of dann_ros: the dann_node lifecycle node and what starts it.

node.py (DannNode, main), params.py (parameter table), arguments.py (the command line the
launch file, tests and benchmark share), env.py (isolated DDS environments), topics.py,
frames.py (newest-frame hand-off), outputs.py (results -> vision_msgs), diagnostics.py,
overlay.py, qos.py. Modules that need rclpy import it themselves; env.py and arguments.py
work without ROS.
"""
