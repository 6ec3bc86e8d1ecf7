"""Native push: Web Push, FCM and APNs for devices without a live socket.

Design: docs/native-push.md. The policy that decides when a delivery leaves
through a provider (socket first, then after the app's grace) calls
``devices.native.dispatch.native_send``; nothing here decides it.
"""
