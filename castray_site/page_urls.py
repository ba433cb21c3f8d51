"""Web pages for people (dashboard, cast, transfers, nodes, clusters) and login/logout."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from clusters import pages as cluster_pages
from nodes import pages as node_pages
from transfers import pages as transfer_pages

urlpatterns = [
    path("", transfer_pages.dashboard, name="dashboard"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("cast/", transfer_pages.cast, name="cast"),
    path("transfers/", transfer_pages.history, name="history"),
    path("transfers/<int:transfer_id>/", transfer_pages.transfer_detail, name="transfer-detail"),
    path("transfers/<int:transfer_id>/tree", transfer_pages.transfer_tree, name="transfer-tree"),
    path("transfers/<int:transfer_id>/cancel", transfer_pages.transfer_cancel_page, name="transfer-cancel"),
    path("transfers/<int:transfer_id>/retry", transfer_pages.transfer_retry_page, name="transfer-retry"),
    path("nodes/", node_pages.node_list, name="node-list"),
    path("nodes/<str:name>/", node_pages.node_detail, name="node-detail"),
    path("clusters/", cluster_pages.cluster_page, name="clusters"),
]
